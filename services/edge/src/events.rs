//! What each client event does (DESIGN.md §2), plus the connect and
//! disconnect steps of a socket. Everything here runs in the socket's queue
//! (see [`crate::queue`]), one step at a time.
//!
//! A handler returns the ack payload or a [`ClientError`]; the caller acks
//! or replies with `exception` + error ack. Success acks of `join_room`,
//! `leave_room`, `send_message` and `admin_broadcast` carry `status: "ok"`
//! besides the documented fields, as the NestJS gateway's did.

use std::sync::Arc;

use sb_events::bus::BusError;
use sb_events::client::{PublicUser, event};
use sb_events::ingest::{MessageAccepted, Origin};
use sb_events::rpc::{HistoryPage, HistoryQuery, HistoryScope, PendingClaim, PendingMessages, RpcErrorCode};
use sb_events::timestamp::{now_ms, rfc3339_ms};
use sb_events::{MessageBody, MessageId, MessageTarget};
use serde_json::{Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::socket::Socket;

use crate::ctx::EdgeCtx;
use crate::delivery::room_key;
use crate::error::{ClientError, Dependency};
use crate::payload::{self, EventFrame, HistoryTarget, echo_name, metric_name};
use crate::session::{Access, Session};
use crate::socket::{ack, ack_sender, emit_to, reply_error};

/// Pending offline messages claimed per request.
const PENDING_PAGE: u32 = 100;
/// Most pages claimed at one connect (the rest wait for the next connect).
const PENDING_PAGES_MAX: usize = 50;

/// How long the connect middleware waits for the stream to store the
/// socket's `SessionOpened` before the client gets its CONNECT.
const OPENED_STORED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The last part of the connect middleware, before the client gets its
/// CONNECT: the socket is counted and reported to presence, and the
/// middleware waits (at most [`OPENED_STORED_WAIT`]) until the presence
/// stream stored the report. A message accepted after the client's
/// `connect` callback fired was therefore accepted after the report was
/// stored, and whoever routes it (messaging's locate cache, presence) reads
/// the report before it (docs/messaging.md, "The locate cache").
pub(crate) async fn report_opened(ctx: &Arc<EdgeCtx>, session: &Arc<Session>) {
    session.state.lock().opened = true;
    ctx.metrics.connects.inc();
    ctx.metrics.sockets.inc();
    ctx.known_users.remember(&session.user.id);
    // The reporter publishes the event in the connect's trace: its producer
    // span lasts until the presence stream stored it.
    let opened_seq = ctx.presence.opened(session);
    session.state.lock().opened_seq = Some(opened_seq.clone());
    match tokio::time::timeout(OPENED_STORED_WAIT, opened_seq.wait()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(sid = %session.sid, %error, "presence reporter stopped before storing this connect")
        }
        Err(_) => tracing::warn!(
            sid = %session.sid,
            wait = ?OPENED_STORED_WAIT,
            "the presence stream has not stored this connect yet (NATS slow or unreachable); connecting anyway: \
             private messages routed before it is stored reach this user's other sockets, or wait as pending"
        ),
    }
    tracing::info!(sid = %session.sid, user = %session.user.id, "socket connected");
}

/// The connect step, first in the queue (the client has its CONNECT): the
/// user's pending offline messages are claimed and emitted to it in order.
pub(crate) async fn open(ctx: &Arc<EdgeCtx>, session: &Arc<Session>) {
    let user_lease = {
        let mut state = session.state.lock();
        state.connect_step_done = true;
        state.user_lease.clone()
    };
    let pending = claim_pending(ctx, session).await;
    if let Some(lease) = user_lease {
        lease.finish_claim(pending).await;
    }
}

async fn claim_pending(ctx: &EdgeCtx, session: &Session) -> Vec<sb_events::client::NewMessage> {
    let mut messages = Vec::new();
    for _ in 0..PENDING_PAGES_MAX {
        let claim = PendingClaim { user: session.user.id.clone(), limit: PENDING_PAGE };
        let page: PendingMessages = match ctx.bus.request(ctx.bus.subjects.messaging_pending(), &claim).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(user = %session.user.id, %error, "claim pending messages; they stay stored for the next connect");
                break;
            }
        };
        let full = page.messages.len() >= PENDING_PAGE as usize;
        messages.extend(page.messages);
        if !full {
            break;
        }
    }
    messages
}

/// The disconnect step, last in the queue.
pub(crate) async fn close(ctx: &Arc<EdgeCtx>, session: &Arc<Session>) {
    release(ctx, session);
}

/// Releases what a session holds and tells presence it is gone (when it
/// was reported): the disconnect step, and a connect that failed after the
/// middleware reported it ([`crate::connect`]'s guard). Once only.
pub(crate) fn release(ctx: &EdgeCtx, session: &Arc<Session>) {
    let (rooms, user_lease, opened) = {
        let mut state = session.state.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        (std::mem::take(&mut state.rooms), state.user_lease.take(), state.opened)
    };
    ctx.registry.remove_session(session);
    ctx.drain.transports.forget(session.sid);
    if opened {
        ctx.presence.closed(session);
        ctx.metrics.sockets.dec();
    }
    drop(rooms);
    drop(user_lease);
    tracing::info!(sid = %session.sid, user = %session.user.id, "socket disconnected");
}

/// Handles one client event.
pub(crate) async fn handle(
    ctx: &Arc<EdgeCtx>,
    session: &Arc<Session>,
    socket: &Arc<Socket>,
    frame: EventFrame,
    ack_id: Option<i64>,
) {
    let name = metric_name(&frame.name);
    let socket_ref = SocketRef::from(socket.clone());
    let refusal = match session.access() {
        Access::Refused(reason) => Some(reason.client_error()),
        Access::Active if session.token_expired() => Some(ClientError::TokenExpired),
        Access::Active => None,
    };
    let result = match refusal {
        Some(error) => Err(error),
        None => dispatch(ctx, session, &socket_ref, &frame).await,
    };
    let ack_handle = ack_sender(socket, ack_id);
    let span = tracing::Span::current();
    match result {
        Ok(reply) => {
            span.record("switchboard.event.result", "ok");
            ctx.metrics.event(name, "ok");
            ack(&socket_ref, ack_handle, &ctx.metrics, &reply);
        }
        Err(error) => {
            span.record("switchboard.event.result", error.outcome());
            span.record("otel.status_code", "error");
            ctx.metrics.event(name, error.outcome());
            tracing::info!(event = %echo_name(&frame.name), error = %error, "event refused");
            reply_error(&socket_ref, ack_handle, &ctx.metrics, &echo_name(&frame.name), &error);
        }
    }
}

async fn dispatch(
    ctx: &Arc<EdgeCtx>,
    session: &Arc<Session>,
    socket: &SocketRef,
    frame: &EventFrame,
) -> Result<Value, ClientError> {
    let arg = frame.arg.as_ref();
    match frame.name.as_str() {
        "join_room" => join_room(ctx, session, socket, payload::room_request("join_room", arg)?).await,
        "leave_room" => leave_room(ctx, session, socket, payload::room_request("leave_room", arg)?),
        "send_message" => send_message(ctx, session, socket, payload::send_message(arg, ctx.limits)?).await,
        "ping" => {
            payload::ping(arg)?;
            ping(ctx, session, socket)
        }
        "admin_broadcast" => admin_broadcast(ctx, session, socket, arg).await,
        "get_history" => get_history(ctx, session, payload::get_history(arg)?).await,
        "get_online_users" => get_online_users(ctx, session, socket, payload::get_online_users(arg)?).await,
        other => Err(ClientError::UnknownEvent(echo_name(other).into_owned())),
    }
}

async fn join_room(
    ctx: &Arc<EdgeCtx>,
    session: &Arc<Session>,
    socket: &SocketRef,
    room: sb_events::RoomName,
) -> Result<Value, ClientError> {
    tracing::Span::current().record("switchboard.room", room.as_str());
    let after_seq = if session.in_room(&room) {
        None
    } else {
        if session.room_count() >= ctx.max_rooms_per_socket {
            ctx.metrics.refused_joins.inc();
            return Err(ClientError::TooManyRooms(ctx.max_rooms_per_socket));
        }
        // Subscribe first (flushed), then join locally, then tell presence:
        // by the time other members learn of the join, deliveries to the
        // room already reach this socket.
        let lease = ctx.deliveries.acquire_room(&room).await.map_err(|error| {
            tracing::warn!(%error, "subscribe to a room's deliveries");
            ClientError::Unavailable(Dependency::RoomDelivery)
        })?;
        socket.join(room_key(&room));
        session.state.lock().rooms.insert(room.clone(), lease);
        ctx.presence.room_joined(session, &room).await
    };
    let members = match ctx.presence.members(&room, after_seq).await {
        Ok(members) => members,
        Err(error) => {
            tracing::warn!(%error, "ask presence for a room's members; answering with this edge's members");
            local_members(ctx, &room)
        }
    };
    Ok(json!({ "status": "ok", "room": room.as_str(), "members": members }))
}

/// The members of `room` connected to this edge (when presence does not answer).
fn local_members(ctx: &EdgeCtx, room: &sb_events::RoomName) -> Vec<PublicUser> {
    let mut members: Vec<PublicUser> = ctx
        .registry
        .all()
        .into_iter()
        .filter(|session| session.in_room(room))
        .map(|session| session.public.clone())
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members.dedup_by(|a, b| a.id == b.id);
    members
}

fn leave_room(
    ctx: &Arc<EdgeCtx>,
    session: &Arc<Session>,
    socket: &SocketRef,
    room: sb_events::RoomName,
) -> Result<Value, ClientError> {
    tracing::Span::current().record("switchboard.room", room.as_str());
    let lease = session.state.lock().rooms.remove(&room);
    if let Some(lease) = lease {
        socket.leave(room_key(&room));
        drop(lease);
        ctx.presence.room_left(session, &room);
    }
    Ok(json!({ "status": "ok", "room": room.as_str() }))
}

async fn send_message(
    ctx: &Arc<EdgeCtx>,
    session: &Arc<Session>,
    socket: &SocketRef,
    request: payload::SendMessage,
) -> Result<Value, ClientError> {
    if let MessageTarget::Room(room) = &request.target {
        tracing::Span::current().record("switchboard.room", room.as_str());
    }
    match &request.target {
        MessageTarget::Room(room) if !session.in_room(room) => {
            return Err(ClientError::NotMember(room.as_str().to_owned()));
        }
        MessageTarget::User(user) => ctx.known_users.check(&ctx.auth, session.token(), user).await?,
        _ => {}
    }
    accept(ctx, session, socket, request.target, request.body).await
}

async fn admin_broadcast(
    ctx: &Arc<EdgeCtx>,
    session: &Arc<Session>,
    socket: &SocketRef,
    arg: Option<&Value>,
) -> Result<Value, ClientError> {
    if !session.user.is_admin() {
        return Err(ClientError::AdminRequired);
    }
    let body = payload::admin_broadcast(arg, ctx.limits)?;
    accept(ctx, session, socket, MessageTarget::Announcement, body).await
}

/// Publishes an accepted message to the ingest stream and answers
/// `{id, timestamp}` only once the stream acknowledged it.
async fn accept(
    ctx: &Arc<EdgeCtx>,
    session: &Arc<Session>,
    socket: &SocketRef,
    target: MessageTarget,
    body: MessageBody,
) -> Result<Value, ClientError> {
    let accepted = MessageAccepted {
        id: MessageId::new_v7(),
        target,
        from: session.sender(),
        message: body,
        timestamp_ms: now_ms(),
        origin: Some(Origin { edge: ctx.edge_id.as_str().to_owned(), socket: socket.id.to_string() }),
    };
    let (id, timestamp_ms) = (accepted.id.clone(), accepted.timestamp_ms);
    match tokio::time::timeout(ctx.publish_timeout, ctx.ingest.publish(accepted)).await {
        Ok(Ok(())) => Ok(json!({ "status": "ok", "id": id.as_str(), "timestamp": rfc3339_ms(timestamp_ms) })),
        Ok(Err(error)) => {
            ctx.metrics.ingest_failures.inc();
            tracing::warn!(%error, message_id = %id, "the ingest stream did not accept a message");
            Err(ClientError::NotAccepted)
        }
        Err(_) => {
            ctx.metrics.ingest_failures.inc();
            tracing::warn!(message_id = %id, "no acknowledgement from the ingest stream in time");
            Err(ClientError::NotAccepted)
        }
    }
}

fn ping(ctx: &EdgeCtx, session: &Session, socket: &SocketRef) -> Result<Value, ClientError> {
    let pong = json!({
        "user": { "id": session.user.id, "email": session.user.email, "role": session.user.role.as_str() },
        "timestamp": sb_events::timestamp::now_rfc3339(),
    });
    emit_to(socket, &ctx.metrics, event::PONG, &pong);
    Ok(pong)
}

async fn get_history(
    ctx: &Arc<EdgeCtx>,
    session: &Session,
    request: payload::GetHistory,
) -> Result<Value, ClientError> {
    let scope = match request.target {
        HistoryTarget::Room(room) => {
            if !session.in_room(&room) {
                return Err(ClientError::NotMember(room.into_string()));
            }
            HistoryScope::Room(room.into_string())
        }
        HistoryTarget::With(user) => HistoryScope::With(user.into_string()),
    };
    // The query travels as text: messaging checks every field of it again
    // and names the one that is wrong.
    let query = HistoryQuery {
        caller: session.user.id.clone(),
        scope,
        before: request.before.map(String::from),
        limit: request.limit,
    };
    let page: HistoryPage =
        ctx.bus.request(ctx.bus.subjects.messaging_history(), &query).await.map_err(|error| match error {
            BusError::Remote { source, .. } => match source.code {
                RpcErrorCode::InvalidArgument | RpcErrorCode::NotFound | RpcErrorCode::PermissionDenied => {
                    ClientError::Refused(source.message)
                }
                RpcErrorCode::Unavailable | RpcErrorCode::Internal => {
                    tracing::warn!(error = %source, "history query failed");
                    ClientError::Unavailable(Dependency::History)
                }
            },
            other => {
                tracing::warn!(error = %other, "history query failed");
                ClientError::Unavailable(Dependency::History)
            }
        })?;
    Ok(json!({ "messages": page.messages }))
}

async fn get_online_users(
    ctx: &Arc<EdgeCtx>,
    session: &Session,
    socket: &SocketRef,
    request: payload::GetOnlineUsers,
) -> Result<Value, ClientError> {
    let opened = session.state.lock().opened_seq.clone();
    let online = ctx.presence.online(request.limit, request.cursor, opened).await.map_err(|error| {
        tracing::warn!(%error, "online users query failed");
        ClientError::Unavailable(Dependency::Presence)
    })?;
    emit_to(socket, &ctx.metrics, event::ONLINE_USERS, &online);
    serde_json::to_value(&online).map_err(|error| {
        tracing::error!(%error, "encode online users");
        ClientError::Internal
    })
}
