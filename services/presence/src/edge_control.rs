//! `switchboard.edge.v1.EdgeControl` over gRPC: admin commands to the edges,
//! served beside `PresenceService` because presence knows every live edge
//! from its heartbeats. The commands reach the edges over NATS:
//!
//! - `Kick`: one `EdgeCommand::KickUser` request on `<p>.control.edges`
//!   (every edge receives it), whose answers are collected until every edge
//!   this replica knows to be alive answered, or [`KICK_WINDOW`] passed: so
//!   an edge this replica has not heard from yet is still reached, and a
//!   kick normally returns as soon as the last edge answered.
//! - `Drain`: one `EdgeCommand::Drain` request on `<p>.control.edge.<id>`
//!   to a live edge (else `NOT_FOUND`); the edge answers at once and drains
//!   in the background.
//! - `ListEdges`: this replica's last heartbeat of every live edge.

use std::sync::Arc;
use std::time::Duration;

use sb_authn::AdminGuard;
use sb_events::EdgeId;
use sb_events::bus::{Bus, BusError};
use sb_events::control::{EdgeCommand, EdgeCommandDone};
use sb_events::presence::EdgeHeartbeat;
use sb_events::rpc::{Reply, RpcErrorCode};
use sb_events::timestamp::now_ms;
use sb_proto::edge::v1 as pb;
use tonic::{Request, Response, Status};

#[cfg(test)]
use crate::replica::EdgeDirectory;
use crate::replica::Replica;

/// How long a kick waits for the edges' answers at most.
pub const KICK_WINDOW: Duration = Duration::from_secs(2);
/// What a kick without a reason tells the client.
pub const DEFAULT_KICK_REASON: &str = "kicked by an admin";
/// The longest kick reason (it is shown to the client).
pub const MAX_REASON_CHARS: usize = 500;
/// The gRPC service.
#[derive(Debug, Clone)]
pub struct EdgeControlGrpc {
    replica: Arc<Replica>,
    bus: Bus,
    guard: AdminGuard,
}

impl EdgeControlGrpc {
    /// A service reaching the edges over `bus`, knowing them from `replica`'s heartbeats.
    pub fn new(replica: Arc<Replica>, bus: Bus, guard: AdminGuard) -> Self {
        Self { replica, bus, guard }
    }

    fn live_edges(&self) -> Vec<(i64, EdgeHeartbeat)> {
        let live = self.replica.edge_directory.live(now_ms());
        // An edge the state saw stop (`EdgeDown`) is not live, whatever its last heartbeat.
        let down: Vec<String> = self
            .replica
            .read(|state| state.edges().into_iter().filter(|edge| edge.down).map(|edge| edge.edge).collect());
        live.into_iter().filter(|(_, heartbeat)| !down.contains(&heartbeat.edge)).collect()
    }
}

#[allow(clippy::result_large_err)] // tonic::Status is what handlers return
fn required(field: &str, value: &str) -> Result<String, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} must not be empty")));
    }
    Ok(value.to_owned())
}

/// The status for a command that failed on its way to an edge or there.
fn command_failed(edge: &str, error: BusError) -> Status {
    match error {
        BusError::Remote { source, .. } => {
            let message = format!("edge {edge}: {}", source.message);
            match source.code {
                RpcErrorCode::InvalidArgument => Status::invalid_argument(message),
                RpcErrorCode::NotFound => Status::not_found(message),
                RpcErrorCode::PermissionDenied => Status::permission_denied(message),
                RpcErrorCode::Unavailable => Status::unavailable(message),
                RpcErrorCode::Internal => Status::internal(message),
            }
        }
        BusError::Request { .. } => Status::unavailable(format!("edge {edge} did not answer; try again")),
        other => Status::unavailable(format!("reach edge {edge}: {other}")),
    }
}

#[tonic::async_trait]
impl pb::edge_control_server::EdgeControl for EdgeControlGrpc {
    async fn kick(&self, request: Request<pb::KickRequest>) -> Result<Response<pb::KickResponse>, Status> {
        self.guard.require_admin(request.metadata()).await?;
        let request = request.into_inner();
        let user_id = required("user_id", &request.user_id)?;
        let reason = match request.reason.trim() {
            "" => DEFAULT_KICK_REASON.to_owned(),
            reason if reason.chars().count() > MAX_REASON_CHARS => {
                return Err(Status::invalid_argument(format!("reason must be at most {MAX_REASON_CHARS} characters")));
            }
            reason if reason.chars().any(char::is_control) => {
                return Err(Status::invalid_argument("reason must not contain control characters"));
            }
            reason => reason.to_owned(),
        };
        let expected = self.live_edges().len();
        let command = EdgeCommand::KickUser { user_id: user_id.clone(), reason };
        let replies: Vec<Reply<EdgeCommandDone>> = self
            .bus
            .request_all(self.bus.subjects.control_edges(), &command, expected, KICK_WINDOW)
            .await
            .map_err(|error| Status::unavailable(format!("reach the edges: {error}")))?;
        let mut response = pb::KickResponse { sockets: 0, edges: 0 };
        for reply in replies {
            match reply {
                Reply::Ok(done) => {
                    response.sockets += done.sockets;
                    response.edges += 1;
                }
                Reply::Error(error) => tracing::warn!(message = %error.message, "an edge refused a kick"),
            }
        }
        tracing::info!(%user_id, sockets = response.sockets, edges = response.edges, expected, "user kicked");
        Ok(Response::new(response))
    }

    async fn drain(&self, request: Request<pb::DrainRequest>) -> Result<Response<pb::DrainResponse>, Status> {
        self.guard.require_admin(request.metadata()).await?;
        let request = request.into_inner();
        let edge_id = required("edge_id", &request.edge_id)?;
        let edge =
            EdgeId::parse(edge_id.clone()).map_err(|error| Status::invalid_argument(format!("edge_id: {error}")))?;
        let over = match request.over.trim() {
            "" => None,
            text => Some(
                sb_config::parse_duration(text).map_err(|error| Status::invalid_argument(format!("over: {error}")))?,
            ),
        };
        if !self.live_edges().iter().any(|(_, heartbeat)| heartbeat.edge == edge_id) {
            return Err(Status::not_found(format!("no live edge with id {edge_id}")));
        }
        let over_ms = over.map(|over| u64::try_from(over.as_millis()).unwrap_or(u64::MAX));
        let done: EdgeCommandDone = self
            .bus
            .request(self.bus.subjects.control_edge(&edge), &EdgeCommand::Drain { over_ms })
            .await
            .map_err(|error| command_failed(&edge_id, error))?;
        tracing::info!(edge = %edge_id, sockets = done.sockets, over_ms = ?done.over_ms, "edge draining");
        Ok(Response::new(pb::DrainResponse {
            edge_id,
            sockets: done.sockets,
            over_ms: done.over_ms.or(over_ms).unwrap_or_default(),
        }))
    }

    async fn list_edges(
        &self,
        request: Request<pb::ListEdgesRequest>,
    ) -> Result<Response<pb::ListEdgesResponse>, Status> {
        self.guard.require_admin(request.metadata()).await?;
        let edges = self
            .live_edges()
            .into_iter()
            .map(|(at_ms, heartbeat)| pb::Edge {
                id: heartbeat.edge,
                address: heartbeat.address,
                version: heartbeat.version,
                sockets: heartbeat.sockets,
                users: heartbeat.users,
                draining: heartbeat.draining,
                last_heartbeat_ms: at_ms,
            })
            .collect();
        Ok(Response::new(pb::ListEdgesResponse { edges }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(edge: &str, interval_ms: u64) -> EdgeHeartbeat {
        EdgeHeartbeat {
            edge: edge.into(),
            incarnation: "1".into(),
            last_seq: 0,
            sockets: 0,
            sent_at_ms: 0,
            interval_ms,
            edge_delivery: true,
            address: String::new(),
            version: String::new(),
            draining: false,
            users: 0,
        }
    }

    #[test]
    fn live_edges_are_the_recently_heard_ones_by_id() {
        let directory = EdgeDirectory::default();
        directory.heard(heartbeat("b", 2000), 10_000);
        directory.heard(heartbeat("a", 2000), 10_000);
        directory.heard(heartbeat("slow", 10_000), 10_000);
        let ids = |now| directory.live(now).into_iter().map(|(_, h)| h.edge).collect::<Vec<_>>();
        assert_eq!(ids(12_000), ["a", "b", "slow"]);
        assert_eq!(ids(16_001), ["slow"], "three 2 s intervals passed");
        assert_eq!(ids(40_001), Vec::<String>::new());
    }
}
