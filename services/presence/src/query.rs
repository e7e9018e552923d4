//! Answers [`PresenceQuery`]s on `<p>.presence.query` (queue group
//! `presence`, so one replica answers each), once this replica has caught
//! up with the stream.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt as _;
use sb_events::PRESENCE_CONSUMER;
use sb_events::bus::Bus;
use sb_events::client::OnlineUsers;
use sb_events::presence::{EdgeSockets, Locations, OnlineAmong, PresenceQuery, RoomMembers};
use sb_events::rpc::{Reply, RpcError, RpcErrorCode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::replica::Replica;

/// The most users one page holds.
pub const MAX_PAGE: u32 = 1000;
/// The most user ids one `online_among` question may name.
const MAX_AMONG: usize = 10_000;
/// How long a `RoomMembers` with `after_seq` waits for the state to get there.
const AFTER_SEQ_WAIT: Duration = Duration::from_secs(3);

/// Encodes a page cursor (the last id of the page), opaque to clients.
pub fn encode_cursor(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

/// Decodes a cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

/// Serves queries until `cancel`.
pub async fn serve_queries(
    bus: Bus,
    replica: Arc<Replica>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut requests = bus.client.queue_subscribe(bus.subjects.presence_query(), PRESENCE_CONSUMER.to_owned()).await?;
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => break,
            message = requests.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let Some(reply_to) = message.reply.clone() else { continue };
        let bus = bus.clone();
        let replica = replica.clone();
        let span = sb_telemetry::nats::consumer_span("presence.query", &message.subject, message.headers.as_ref());
        tracker.spawn(tracing::Instrument::instrument(
            async move {
                replica.metrics.queries.inc();
                let result = match serde_json::from_slice::<PresenceQuery>(&message.payload) {
                    Ok(query) => answer(&bus, &replica, reply_to, query).await,
                    Err(error) => {
                        let reply: Reply<()> = Reply::Error(RpcError::new(
                            RpcErrorCode::InvalidArgument,
                            format!("invalid query: {error}"),
                        ));
                        bus.respond(reply_to, &reply).await
                    }
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "answer presence query");
                }
            },
            span,
        ));
    }
    let _ = requests.unsubscribe().await;
    Ok(())
}

async fn answer(
    bus: &Bus,
    replica: &Replica,
    reply_to: async_nats::Subject,
    query: PresenceQuery,
) -> Result<(), sb_events::bus::BusError> {
    match query {
        PresenceQuery::OnlineUsers { limit, cursor, after_seq } => {
            let reply = match after_seq {
                Some(seq) if !replica.wait_applied(seq, AFTER_SEQ_WAIT).await => Reply::Error(RpcError::new(
                    RpcErrorCode::Unavailable,
                    "presence has not caught up with the caller's connect yet; try again",
                )),
                _ => Reply::from(online_users(replica, limit, cursor.as_deref())),
            };
            bus.respond(reply_to, &reply).await
        }
        PresenceQuery::RoomMembers { room, after_seq } => {
            let reply = match after_seq {
                Some(seq) if !replica.wait_applied(seq, AFTER_SEQ_WAIT).await => Reply::Error(RpcError::new(
                    RpcErrorCode::Unavailable,
                    "presence has not caught up with the room's join yet; try again",
                )),
                _ => {
                    let (members, _, count) = replica.read(|state| state.room_page(&room, None, MAX_PAGE as usize));
                    Reply::Ok(RoomMembers { room, members, count })
                }
            };
            bus.respond(reply_to, &reply).await
        }
        PresenceQuery::Locate { users } => {
            let reply = if users.len() > MAX_AMONG {
                Reply::Error(RpcError::new(
                    RpcErrorCode::InvalidArgument,
                    format!("users: at most {MAX_AMONG} per question"),
                ))
            } else {
                let direct = replica.edge_delivery.lock().clone();
                let (users, applied_seq) = replica.read(|state| {
                    let users = users
                        .into_iter()
                        .filter_map(|user| {
                            let edges: Vec<EdgeSockets> = state
                                .locate(&user)
                                .into_iter()
                                .map(|(edge, sockets)| EdgeSockets {
                                    edge: edge.to_owned(),
                                    sockets,
                                    edge_delivery: direct.contains(edge),
                                })
                                .collect();
                            (!edges.is_empty()).then_some((user, edges))
                        })
                        .collect();
                    (users, state.applied_seq())
                });
                Reply::Ok(Locations { users, applied_seq: Some(applied_seq) })
            };
            bus.respond(reply_to, &reply).await
        }
        PresenceQuery::OnlineAmong { users } => {
            let reply = if users.len() > MAX_AMONG {
                Reply::Error(RpcError::new(
                    RpcErrorCode::InvalidArgument,
                    format!("users: at most {MAX_AMONG} per question"),
                ))
            } else {
                let online = replica.read(|state| users.into_iter().filter(|id| state.is_online(id)).collect());
                Reply::Ok(OnlineAmong { online })
            };
            bus.respond(reply_to, &reply).await
        }
    }
}

/// One page of online users: `limit` 1..=1000, `cursor` from the previous page.
pub fn online_users(replica: &Replica, limit: u32, cursor: Option<&str>) -> Result<OnlineUsers, RpcError> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(RpcError::new(RpcErrorCode::InvalidArgument, format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let after = match cursor {
        Some(cursor) => {
            Some(decode_cursor(cursor).ok_or_else(|| RpcError::new(RpcErrorCode::InvalidArgument, "invalid cursor"))?)
        }
        None => None,
    };
    Ok(replica.read(|state| {
        let (users, more) = state.online_page(after.as_deref(), limit as usize);
        let cursor = if more { users.last().map(|user| encode_cursor(&user.id)) } else { None };
        OnlineUsers { users, count: state.totals().users, cursor }
    }))
}
