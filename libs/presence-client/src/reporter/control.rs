//! The reporter's side channels: an [`EdgeHeartbeat`] every interval, and
//! answers to presence's and the admin's commands on `control.edge.<edge>`
//! and `control.edges`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use parking_lot::Mutex;
use sb_events::EdgeId;
use sb_events::bus::{Bus, decode};
use sb_events::control::{EdgeCommand, EdgeCommandDone};
use sb_events::presence::EdgeHeartbeat;
use sb_events::rpc::{Reply, RpcError, RpcErrorCode};
use sb_events::timestamp::now_ms;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Command, Progress, SessionSource};

/// What every heartbeat of this incarnation says besides its counts.
pub(super) struct HeartbeatSettings {
    pub(super) edge: EdgeId,
    pub(super) incarnation: String,
    pub(super) interval: Duration,
    pub(super) edge_delivery: bool,
    pub(super) address: String,
    pub(super) version: String,
}

pub(super) async fn send_heartbeats(
    bus: Bus,
    settings: HeartbeatSettings,
    source: Arc<dyn SessionSource>,
    progress: Arc<Mutex<Progress>>,
    cancel: CancellationToken,
) {
    let HeartbeatSettings { edge, incarnation, interval, edge_delivery, address, version } = settings;
    let subject = bus.subjects.presence_heartbeat(&edge);
    let interval = interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Progress { last_seq, sockets } = *progress.lock();
        let status = source.status();
        let heartbeat = EdgeHeartbeat {
            edge: edge.as_str().to_owned(),
            incarnation: incarnation.clone(),
            last_seq,
            sockets,
            sent_at_ms: now_ms(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            edge_delivery,
            address: address.clone(),
            version: version.clone(),
            draining: status.draining,
            users: status.users,
        };
        if let Err(error) = bus.publish(subject.clone(), &heartbeat).await {
            tracing::debug!(%error, "send presence heartbeat");
        }
    }
}

pub(super) async fn serve_control(
    bus: Bus,
    edge: EdgeId,
    commands: mpsc::UnboundedSender<Command>,
    source: Arc<dyn SessionSource>,
    mut messages: futures_util::stream::SelectAll<async_nats::Subscriber>,
    cancel: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => return,
            message = messages.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        // A command sent inside a trace (an admin's Kick) is handled in it.
        let span = match sb_telemetry::nats::traced(message.headers.as_ref()) {
            Some(trace) => sb_telemetry::nats::consumer_span_in(&trace, "edge.control", message.subject.as_str()),
            None => tracing::Span::none(),
        };
        handle_command(&bus, &edge, &commands, source.as_ref(), message).instrument(span).await;
    }
}

/// Carries out one control command and answers it.
async fn handle_command(
    bus: &Bus,
    edge: &EdgeId,
    commands: &mpsc::UnboundedSender<Command>,
    source: &dyn SessionSource,
    message: async_nats::Message,
) {
    let edge_name = || edge.as_str().to_owned();
    let reply: Reply<EdgeCommandDone> = match decode::<EdgeCommand>(message.subject.as_str(), &message.payload) {
        Ok(EdgeCommand::Snapshot { request_id }) => {
            let (done, counted) = oneshot::channel();
            let _ = commands.send(Command::Snapshot { request_id, done });
            match counted.await {
                Ok(sockets) => Reply::Ok(EdgeCommandDone { edge: edge_name(), sockets, over_ms: None }),
                Err(_) => Reply::Error(RpcError::new(RpcErrorCode::Unavailable, "edge is stopping")),
            }
        }
        Ok(EdgeCommand::KickUser { user_id, reason }) => {
            let sockets = source.kick_user(&user_id, &reason);
            tracing::info!(%user_id, sockets, "user kicked by control command");
            Reply::Ok(EdgeCommandDone { edge: edge_name(), sockets, over_ms: None })
        }
        Ok(EdgeCommand::Drain { over_ms }) => match source.drain(over_ms.map(Duration::from_millis)) {
            Some(started) => {
                tracing::info!(sockets = started.sockets, over = ?started.over, "drain requested by control command");
                Reply::Ok(EdgeCommandDone {
                    edge: edge_name(),
                    sockets: started.sockets,
                    over_ms: Some(u64::try_from(started.over.as_millis()).unwrap_or(u64::MAX)),
                })
            }
            None => Reply::Error(RpcError::new(RpcErrorCode::Unavailable, "this edge cannot drain")),
        },
        Err(error) => {
            tracing::info!(%error, "invalid edge command");
            Reply::Error(RpcError::new(RpcErrorCode::InvalidArgument, format!("invalid edge command: {error}")))
        }
    };
    if let Some(reply_to) = message.reply
        && let Err(error) = bus.respond(reply_to, &reply).await
    {
        tracing::warn!(%error, "answer edge command");
    }
}
