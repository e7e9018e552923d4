//! Connecting: the token check and everything a socket needs before the
//! client gets its CONNECT.
//!
//! The namespace has exactly one connect middleware, [`authenticate`]. It
//! runs *before* socketioxide sends CONNECT, so whatever a client emits in
//! its `connect` callback finds its handlers registered (SOCKETIO-NOTES.md,
//! hazard 2). In order it:
//!
//! 1. finds the token (`auth.token`, then `?token=`, then
//!    `Authorization`; first found wins, a leading `Bearer ` is fine) and
//!    verifies it with auth; a refusal is a `connect_error` whose message is
//!    the reason (`token missing`, `token invalid`, `token expired`,
//!    `token revoked`, `user unknown`, `user disabled`, or
//!    `authentication unavailable, try again`);
//! 2. registers the session (refused if a revocation for the user arrived
//!    while the token was being verified);
//! 3. subscribes to the user's deliveries (flushed) and joins the socket to
//!    `user:<id>`, in the claiming state (see [`crate::delivery`]);
//! 4. installs the [`Dispatcher`] and the disconnect handler;
//! 5. reports the session to presence and waits until the presence stream
//!    stored the report ([`crate::events::report_opened`]), so that a
//!    message sent after the client's `connect` callback is routed by a
//!    view that already has this socket.
//!
//! A refusal leaves nothing behind: the session and its lease are dropped,
//! socketioxide removes the socket from every local room, and presence was
//! never told (the report is the last step and cannot be refused). A
//! connection that goes away after the report but before socketioxide
//! sends CONNECT never runs the disconnect handler; the [`ConnectGuard`]
//! kept in the socket's extensions then releases the session when the
//! socket is dropped. The connect handler disarms it and starts the
//! socket's queue, whose first step claims pending messages (see
//! [`crate::queue`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use axum::extract::Query;
use http::header::AUTHORIZATION;
use sb_authn::AuthFailure;
use sb_events::UserId;
use serde_json::Value;
use socketioxide::extract::TryData;
use tracing::Instrument as _;

use crate::bucket::TokenBucket;
use crate::ctx::EdgeCtx;
use crate::error::ConnectRefusal;
use crate::queue::{self, Dispatcher};
use crate::session::{Budget, Session};
use crate::socket::SocketArc;

/// Where the token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundToken {
    /// A non-empty token (maybe with a `Bearer ` prefix).
    Token(String),
    /// `auth.token` is there but is not a string.
    NotAString,
    /// No source carries a token.
    Missing,
}

/// Finds the token: `auth.token` in the handshake, `?token=` in the query,
/// the `Authorization` header; the first non-empty one wins.
pub fn find_token(auth: Option<&Value>, parts: &http::request::Parts) -> FoundToken {
    match auth.and_then(|auth| auth.get("token")) {
        Some(Value::String(token)) if !token.trim().is_empty() => return FoundToken::Token(token.clone()),
        Some(Value::String(_) | Value::Null) | None => {}
        Some(_) => return FoundToken::NotAString,
    }
    if let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        && let Some((_, token)) = pairs.into_iter().find(|(key, value)| key == "token" && !value.trim().is_empty())
    {
        return FoundToken::Token(token);
    }
    if let Some(header) = parts.headers.get(AUTHORIZATION)
        && let Ok(text) = header.to_str()
        && !sb_authn::strip_bearer(text).is_empty()
    {
        return FoundToken::Token(text.to_owned());
    }
    FoundToken::Missing
}

/// The connect middleware (see the module docs).
pub(crate) async fn authenticate(
    ctx: Weak<EdgeCtx>,
    SocketArc(socket): SocketArc,
    TryData(auth): TryData<Value>,
) -> Result<(), ConnectRefusal> {
    let Some(ctx) = ctx.upgrade() else {
        return Err(ConnectRefusal::Unavailable);
    };
    // One connect, one trace: VerifyToken and the session report are its children.
    let span = tracing::info_span!(
        parent: None,
        "socketio.connect",
        otel.name = "socketio connect",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        switchboard.event = "connect",
        switchboard.transport = ?socket.transport_type(),
        switchboard.user.id = tracing::field::Empty,
        switchboard.auth.cache = tracing::field::Empty,
        switchboard.connect.result = tracing::field::Empty,
    );
    let result = authenticate_inner(&ctx, &socket, auth.ok()).instrument(span.clone()).await;
    if result.is_ok() {
        // The connect step (pending claim) joins this trace once the client has its CONNECT.
        socket.extensions.insert(sb_telemetry::TraceLink::of(&span));
    }
    match &result {
        Ok(()) => span.record("switchboard.connect.result", "accepted"),
        Err(refusal) => span.record("switchboard.connect.result", tracing::field::display(refusal)),
    };
    if let Err(refusal) = &result {
        span.record("otel.status_code", "error");
        ctx.metrics
            .connect_rejects
            .get_or_create(&crate::metrics::ReasonLabel { reason: refusal.metric_reason() })
            .inc();
        tracing::info!(sid = %socket.id, reason = %refusal, "connection refused");
    }
    result
}

async fn authenticate_inner(
    ctx: &Arc<EdgeCtx>,
    socket: &Arc<socketioxide::socket::Socket>,
    auth: Option<Value>,
) -> Result<(), ConnectRefusal> {
    let token = match find_token(auth.as_ref(), socket.req_parts()) {
        FoundToken::Token(token) => token,
        FoundToken::NotAString => return Err(ConnectRefusal::Token(AuthFailure::TokenInvalid)),
        FoundToken::Missing => return Err(ConnectRefusal::Token(AuthFailure::TokenMissing)),
    };
    let user = ctx.auth.verify(&token).await.map_err(|failure| match failure {
        AuthFailure::Unavailable { detail } => {
            tracing::warn!(%detail, "auth did not answer VerifyToken");
            ConnectRefusal::AuthUnavailable
        }
        reason => ConnectRefusal::Token(reason),
    })?;
    let user_id = UserId::parse(user.id.clone()).map_err(|_| ConnectRefusal::Token(AuthFailure::UserUnknown))?;
    tracing::Span::current().record("switchboard.user.id", user_id.as_str());
    let bucket = TokenBucket::new(ctx.rate_per_sec, f64::from(ctx.rate_burst), std::time::Instant::now());
    let budget = Budget { events: bucket, buffer_bytes: ctx.socket_buffer_bytes };
    let session = Arc::new(Session::new(socket, user, user_id, token, budget, &ctx.registry, &ctx.drain.transports));
    ctx.registry.insert(&session)?;
    ctx.drain.transports.watch(socket, session.outbox.clone());

    let socket_ref = socketioxide::extract::SocketRef::from(socket.clone());
    let user_lease = ctx.deliveries.acquire_user(&session.user_id, &socket_ref);
    session.state.lock().user_lease = Some(Arc::new(user_lease));

    socket.on_fallback(Dispatcher { ctx: ctx.clone(), session: session.clone() });
    let close_ctx = ctx.clone();
    let close_session = session.clone();
    socket.on_disconnect(move |SocketArc(socket): SocketArc| {
        close_ctx.drain.transports.forget(socket.id);
        queue::enqueue_close(&close_ctx, &close_session, socket);
        std::future::ready(())
    });
    socket.extensions.insert(session.clone());
    socket.extensions.insert(Arc::new(ConnectGuard {
        ctx: Arc::downgrade(ctx),
        session: session.clone(),
        armed: AtomicBool::new(true),
    }));
    crate::events::report_opened(ctx, &session).await;
    Ok(())
}

/// Releases a session whose socket is dropped before the connect handler
/// ran (see the module docs); the connect handler disarms it.
pub(crate) struct ConnectGuard {
    ctx: Weak<EdgeCtx>,
    session: Arc<Session>,
    armed: AtomicBool,
}

impl Drop for ConnectGuard {
    fn drop(&mut self) {
        if !self.armed.load(Ordering::Acquire) {
            return;
        }
        if let Some(ctx) = self.ctx.upgrade() {
            tracing::info!(sid = %self.session.sid, "connection closed before its CONNECT was sent; releasing its session");
            crate::events::release(&ctx, &self.session);
        }
    }
}

/// The connect handler: runs once the client has its CONNECT and starts the
/// socket's queue (whose first step is the connect step).
pub(crate) async fn connected(ctx: Weak<EdgeCtx>, SocketArc(socket): SocketArc) {
    let Some(ctx) = ctx.upgrade() else {
        return;
    };
    if let Some(guard) = socket.extensions.remove::<Arc<ConnectGuard>>() {
        guard.armed.store(false, Ordering::Release);
    }
    let Some(session) = socket.extensions.get::<Arc<Session>>() else {
        tracing::error!(sid = %socket.id, "a connected socket has no session");
        return;
    };
    queue::start(&ctx, &session, socket);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(uri: &str, authorization: Option<&str>) -> http::request::Parts {
        let mut request = http::Request::builder().uri(uri);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.body(()).expect("valid request").into_parts().0
    }

    #[test]
    fn first_source_wins() {
        let both = parts("/socket.io/?EIO=4&token=from-query", Some("Bearer from-header"));
        let auth = json!({"token": "from-auth"});
        assert_eq!(find_token(Some(&auth), &both), FoundToken::Token("from-auth".into()));
        assert_eq!(find_token(Some(&json!({})), &both), FoundToken::Token("from-query".into()));
        assert_eq!(find_token(Some(&json!({"token": ""})), &both), FoundToken::Token("from-query".into()));
        let header_only = parts("/socket.io/?EIO=4", Some("Bearer from-header"));
        assert_eq!(find_token(None, &header_only), FoundToken::Token("Bearer from-header".into()));
        assert_eq!(find_token(None, &parts("/socket.io/?EIO=4&token=", Some("Bearer "))), FoundToken::Missing);
        assert_eq!(find_token(Some(&json!({"token": 5})), &both), FoundToken::NotAString);
    }

    #[test]
    fn query_token_is_url_decoded() {
        let encoded = parts("/socket.io/?token=Bearer%20a.b%2Bc&EIO=4", None);
        assert_eq!(find_token(None, &encoded), FoundToken::Token("Bearer a.b+c".into()));
    }
}
