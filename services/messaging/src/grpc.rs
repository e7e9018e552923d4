//! The admin gRPC API, `switchboard.messaging.v1.MessagingService`. Every RPC
//! needs an admin token in the `authorization` metadata, checked through auth
//! on each call (UNAUTHENTICATED without a valid one, PERMISSION_DENIED for a
//! non-admin).
//!
//! - `History`: any room's or conversation's stored messages, newest first
//!   (`limit` 0 means 50, at most 100; `next_before` pages on).
//! - `Notify`: a `notification` event to one user's sockets or to everyone.
//!   Notifications are live only: not stored, not queued for offline users.
//! - `Announce`: an `admin_announcement` from the calling admin. It goes
//!   through the ingest stream like a client's `admin_broadcast`, so it is
//!   stored and routed by the same path, and the reply comes after the
//!   stream's PubAck.

use sb_authn::{AdminGuard, AuthClient, AuthnError, bearer_token};
use sb_events::bus::Bus;
use sb_events::client::{Notification, event};
use sb_events::deliver::Delivery;
use sb_events::message::InvalidBody;
use sb_events::{MessageAccepted, MessageBody, MessageId, MessageTarget, Sender, UserId};
use sb_proto::messaging::v1 as pb;
use sb_proto::messaging::v1::messaging_service_server::MessagingService;
use tonic::{Request, Response, Status};

use crate::metrics::{Metrics, OutcomeLabel};
use crate::query::{self, QueryError};
use crate::store::{HistoryScope, Store};
use crate::{Config, Error};

/// How long `Notify` waits for the NATS client to send the notification
/// (while NATS is unreachable it would wait for a reconnect).
const NOTIFY_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Page size of `History` when the request says 0.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Longest notification title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// The `MessagingService` implementation.
#[derive(Debug, Clone)]
pub struct MessagingApi {
    bus: Bus,
    store: Store,
    metrics: Metrics,
    auth: AuthClient,
    guard: AdminGuard,
    max_message_bytes: usize,
}

impl MessagingApi {
    /// The API for `config`, with a lazily connecting client of auth.
    pub fn new(config: &Config, bus: Bus, store: Store, metrics: Metrics) -> Result<Self, Error> {
        let auth = AuthClient::connect_lazy(&config.auth_addr)
            .map_err(|error| Error::AuthAddr { addr: config.auth_addr.clone(), reason: error.to_string() })?;
        Ok(Self {
            bus,
            store,
            metrics,
            guard: AdminGuard::new(auth.clone()),
            auth,
            max_message_bytes: config.max_message_bytes,
        })
    }

    #[allow(clippy::result_large_err)] // handlers return tonic::Status
    fn parse_body(&self, field: &'static str, text: &str) -> Result<MessageBody, Status> {
        MessageBody::parse(field, text, self.max_message_bytes).map_err(|error| {
            let reason = match error {
                InvalidBody::Empty { .. } => "must not be empty".to_owned(),
                InvalidBody::TooLong { max_bytes, .. } => format!("must be at most {max_bytes} bytes"),
            };
            Status::invalid_argument(format!("invalid {field}: {reason}"))
        })
    }

    /// Checks that `user_id` names a user, asking auth with the caller's token.
    async fn require_user_exists(&self, metadata: &tonic::metadata::MetadataMap, user_id: &str) -> Result<(), Status> {
        let token = bearer_token(metadata).map_err(|failure| failure.to_status())?;
        match self.auth.lookup_users(token, vec![user_id.to_owned()]).await {
            Ok(users) if users.iter().any(|user| user.id == user_id) => Ok(()),
            Ok(_) => Err(Status::not_found("user_id names no user")),
            Err(AuthnError::Unavailable(detail)) => {
                tracing::warn!(%detail, "cannot look the notified user up: auth unavailable");
                Err(Status::unavailable("auth unavailable, try again"))
            }
            Err(AuthnError::Rejected(failure)) => Err(failure.to_status()),
            Err(error) => {
                tracing::warn!(%error, "look the notified user up");
                Err(Status::unavailable("cannot check user_id, try again"))
            }
        }
    }
}

fn to_proto(message: &MessageAccepted) -> pb::StoredMessage {
    pb::StoredMessage {
        id: message.id.as_str().to_owned(),
        kind: message.kind().as_str().to_owned(),
        from_id: message.from.id.as_str().to_owned(),
        from_email: message.from.email.clone(),
        room: message.target.room().map(|room| room.as_str().to_owned()).unwrap_or_default(),
        to: message.target.recipient().map(|to| to.as_str().to_owned()).unwrap_or_default(),
        message: message.message.as_str().to_owned(),
        timestamp: sb_events::timestamp::rfc3339_ms(message.timestamp_ms),
    }
}

#[tonic::async_trait]
impl MessagingService for MessagingApi {
    async fn history(&self, request: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryResponse>, Status> {
        self.guard.require_admin(request.metadata()).await?;
        let request = request.into_inner();
        let result = async {
            let scope = match &request.scope {
                Some(pb::history_request::Scope::Room(room)) => HistoryScope::Room(query::parse_room("room", room)?),
                Some(pb::history_request::Scope::Conversation(conversation)) => HistoryScope::Conversation(
                    query::parse_user("conversation.user_a", &conversation.user_a)?,
                    query::parse_user("conversation.user_b", &conversation.user_b)?,
                ),
                None => {
                    return Err(QueryError::InvalidArgument {
                        field: "scope",
                        reason: "set room or conversation".to_owned(),
                    });
                }
            };
            let limit = if request.limit == 0 { DEFAULT_HISTORY_LIMIT } else { request.limit };
            let before = query::parse_before(Some(request.before.as_str()))?;
            query::read_history(&self.store, &scope, before.as_ref(), limit).await
        }
        .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.outcome(),
        };
        self.metrics.history_requests.get_or_create(&OutcomeLabel { outcome }).inc();
        let page = result.map_err(|error| error.to_status())?;
        let next_before = if page.has_more { page.messages.last().map(|m| m.id.to_string()) } else { None };
        Ok(Response::new(pb::HistoryResponse {
            messages: page.messages.iter().map(to_proto).collect(),
            next_before: next_before.unwrap_or_default(),
        }))
    }

    async fn notify(&self, request: Request<pb::NotifyRequest>) -> Result<Response<pb::NotifyResponse>, Status> {
        self.guard.require_admin(request.metadata()).await?;
        let (metadata, _, notify) = request.into_parts();
        let body = self.parse_body("message", &notify.message)?;
        if notify.title.chars().count() > MAX_TITLE_CHARS {
            return Err(Status::invalid_argument(format!(
                "invalid title: must be at most {MAX_TITLE_CHARS} characters"
            )));
        }
        if notify.title.chars().any(char::is_control) {
            return Err(Status::invalid_argument("invalid title: must not contain control characters"));
        }
        let subject = if !notify.room.is_empty() {
            if !notify.user_id.is_empty() {
                return Err(Status::invalid_argument("invalid room: give user_id or room, not both"));
            }
            let room = sb_events::RoomName::parse(notify.room.as_str())
                .map_err(|error| Status::invalid_argument(format!("invalid room: {error}")))?;
            self.bus.subjects.deliver_room(&room)
        } else if notify.user_id.is_empty() {
            self.bus.subjects.deliver_all()
        } else {
            let user = sb_events::UserId::parse(notify.user_id.as_str())
                .map_err(|error| Status::invalid_argument(format!("invalid user_id: {error}")))?;
            self.require_user_exists(&metadata, user.as_str()).await?;
            self.bus.subjects.deliver_user(&user)
        };
        let notification = Notification {
            id: uuid::Uuid::now_v7().to_string(),
            title: Some(notify.title).filter(|title| !title.is_empty()),
            message: body.into(),
            timestamp: sb_events::timestamp::now_rfc3339(),
        };
        let delivery = Delivery::new(event::NOTIFICATION, &notification).map_err(|error| {
            tracing::error!(%error, "encode notification");
            Status::internal("internal error")
        })?;
        if let Err(error) = self.bus.publish_flushed(subject, &delivery, NOTIFY_FLUSH_TIMEOUT).await {
            tracing::warn!(%error, "publish notification");
            return Err(Status::unavailable("notification not sent, try again"));
        }
        self.metrics.notifications.inc();
        Ok(Response::new(pb::NotifyResponse { id: notification.id, timestamp: notification.timestamp }))
    }

    async fn announce(&self, request: Request<pb::AnnounceRequest>) -> Result<Response<pb::AnnounceResponse>, Status> {
        let admin = self.guard.require_admin(request.metadata()).await?;
        let announce = request.into_inner();
        let body = self.parse_body("message", &announce.message)?;
        let sender = UserId::parse(admin.id).map_err(|error| {
            tracing::error!(%error, "auth verified an admin whose id is not a user id");
            Status::internal("internal error")
        })?;
        let accepted = MessageAccepted {
            id: MessageId::new_v7(),
            target: MessageTarget::Announcement,
            from: Sender { id: sender, email: admin.email },
            message: body,
            timestamp_ms: sb_events::timestamp::now_ms(),
            origin: None,
        };
        if let Err(error) = self.bus.publish_accepted(&accepted).await {
            tracing::warn!(%error, "publish announcement to the ingest stream");
            return Err(Status::unavailable("announcement not accepted, try again"));
        }
        Ok(Response::new(pb::AnnounceResponse {
            id: accepted.id.into(),
            timestamp: sb_events::timestamp::rfc3339_ms(accepted.timestamp_ms),
        }))
    }
}
