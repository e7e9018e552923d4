//! NATS request/reply the edge calls, both in queue group
//! [`sb_events::MESSAGING_CONSUMER`] so one replica answers each request:
//!
//! - `<p>.messaging.history`: [`HistoryQuery`] → `Reply<HistoryPage>`, newest
//!   first. The edge has checked that the caller is a member of the room; a
//!   `with` query returns only the conversation between the caller and that user.
//! - `<p>.messaging.pending`: [`PendingClaim`] → `Reply<PendingMessages>`, the
//!   recipient's messages stored while it was offline, oldest first, each
//!   handed out once.

use async_nats::Subscriber;
use futures_util::StreamExt as _;
use sb_events::MessageAccepted;
use sb_events::bus::Bus;
use sb_events::rpc::{
    HistoryPage, HistoryQuery, HistoryScope, PendingClaim, PendingMessages, Reply, RpcError, RpcErrorCode,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::metrics::{Metrics, OutcomeLabel};
use crate::query::{self, QueryError};
use crate::store::{self, Store};

/// Why the request subjects could not be subscribed.
#[derive(Debug, thiserror::Error)]
pub enum RequestsError {
    /// The subscription was refused.
    #[error("subscribe to messaging requests: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The server did not confirm it has the subscriptions.
    #[error("confirm request subscriptions with the server: {0}")]
    Confirm(String),
}

/// Answers the edge's history and pending-claim requests.
#[derive(Debug, Clone)]
pub struct Requests {
    /// The bus to answer on.
    pub bus: Bus,
    /// The store.
    pub store: Store,
    /// Metrics.
    pub metrics: Metrics,
}

/// The two subscriptions, made in `App::build` so requests are answered as
/// soon as it returns.
#[derive(Debug)]
pub struct RequestSubscriptions {
    history: Subscriber,
    pending: Subscriber,
}

impl Requests {
    /// Subscribes to both request subjects in the `messaging` queue group.
    pub async fn subscribe(&self) -> Result<RequestSubscriptions, RequestsError> {
        let group = sb_events::MESSAGING_CONSUMER.to_owned();
        let history = self.bus.client.queue_subscribe(self.bus.subjects.messaging_history(), group.clone()).await?;
        let pending = self.bus.client.queue_subscribe(self.bus.subjects.messaging_pending(), group).await?;
        confirm_with_server(&self.bus).await?;
        Ok(RequestSubscriptions { history, pending })
    }

    /// Answers requests until `shutdown`; each request runs as its own task
    /// on `tracker`, so the caller can wait for in-flight answers.
    pub async fn serve(self, subscriptions: RequestSubscriptions, tracker: TaskTracker, shutdown: CancellationToken) {
        let RequestSubscriptions { mut history, mut pending } = subscriptions;
        loop {
            let (message, kind) = tokio::select! {
                () = shutdown.cancelled() => break,
                Some(message) = history.next() => (message, RequestKind::History),
                Some(message) = pending.next() => (message, RequestKind::Pending),
                else => break,
            };
            let this = self.clone();
            let span =
                sb_telemetry::nats::consumer_span(kind.span_name(), message.subject.as_str(), message.headers.as_ref());
            tracker.spawn(async move { this.answer(kind, message).await }.instrument(span));
        }
        if let Err(error) = history.unsubscribe().await {
            tracing::debug!(%error, "unsubscribe history requests");
        }
        if let Err(error) = pending.unsubscribe().await {
            tracing::debug!(%error, "unsubscribe pending claims");
        }
    }

    async fn answer(&self, kind: RequestKind, message: async_nats::Message) {
        let Some(reply_to) = message.reply.clone() else {
            tracing::info!(subject = %message.subject, "ignoring a request without a reply subject");
            return;
        };
        let sent = match kind {
            RequestKind::History => {
                let reply = match decode::<HistoryQuery>(&message.payload) {
                    Ok(query) => self.history(query).await,
                    Err(error) => Reply::Error(error),
                };
                self.bus.respond(reply_to, &reply).await
            }
            RequestKind::Pending => {
                let reply = match decode::<PendingClaim>(&message.payload) {
                    Ok(claim) => self.pending(claim).await,
                    Err(error) => Reply::Error(error),
                };
                self.bus.respond(reply_to, &reply).await
            }
        };
        if let Err(error) = sent {
            tracing::warn!(%error, "answer request");
        }
    }

    /// Answers one history query.
    pub async fn history(&self, query: HistoryQuery) -> Reply<HistoryPage> {
        let result = async {
            let scope = match &query.scope {
                HistoryScope::Room(room) => store::HistoryScope::Room(query::parse_room("room", room)?),
                HistoryScope::With(other) => store::HistoryScope::Conversation(
                    query::parse_user("caller", &query.caller)?,
                    query::parse_user("with", other)?,
                ),
            };
            let before = query::parse_before(query.before.as_deref())?;
            query::read_history(&self.store, &scope, before.as_ref(), query.limit).await
        }
        .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.outcome(),
        };
        self.metrics.history_requests.get_or_create(&OutcomeLabel { outcome }).inc();
        to_reply(
            result
                .map(|page| HistoryPage { messages: page.messages.iter().map(MessageAccepted::new_message).collect() }),
        )
    }

    /// Answers one pending claim.
    pub async fn pending(&self, claim: PendingClaim) -> Reply<PendingMessages> {
        let result = query::claim_pending(&self.store, &claim.user, claim.limit).await;
        if let Ok(messages) = &result {
            self.metrics.pending_claimed.inc_by(messages.len() as u64);
            if !messages.is_empty() {
                tracing::debug!(claimed = messages.len(), "handed out pending private messages");
            }
        }
        to_reply(
            result.map(|messages| PendingMessages {
                messages: messages.iter().map(MessageAccepted::new_message).collect(),
            }),
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum RequestKind {
    History,
    Pending,
}

impl RequestKind {
    fn span_name(self) -> &'static str {
        match self {
            Self::History => "messaging.history",
            Self::Pending => "messaging.pending",
        }
    }
}

/// Waits until the server has processed everything this connection sent so
/// far. A flush only writes to the socket; but the server handles one
/// connection's input in order, so once a probe published now comes back to
/// our own subscription, the subscriptions sent before it are in place and a
/// request sent right after `App::build` finds a responder.
async fn confirm_with_server(bus: &Bus) -> Result<(), RequestsError> {
    let probe = bus.client.new_inbox();
    let mut echo = bus.client.subscribe(probe.clone()).await?;
    bus.publish_bytes(probe, bytes::Bytes::new()).await.map_err(|error| RequestsError::Confirm(error.to_string()))?;
    match tokio::time::timeout(std::time::Duration::from_secs(10), echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(RequestsError::Confirm("the probe subscription closed".to_owned())),
        Err(_) => Err(RequestsError::Confirm("no echo from the server within 10 s".to_owned())),
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, RpcError> {
    serde_json::from_slice(payload)
        .map_err(|error| RpcError::new(RpcErrorCode::InvalidArgument, format!("invalid request: {error}")))
}

fn to_reply<T: Serialize>(result: Result<T, QueryError>) -> Reply<T> {
    match result {
        Ok(value) => Reply::Ok(value),
        Err(error) => Reply::Error(error.to_rpc()),
    }
}
