//! `switchboard.presence.v1.PresenceService` over gRPC: admin-only reads of
//! this replica's state (every replica holds the whole state).

use std::sync::Arc;

use sb_authn::AdminGuard;
use sb_events::RoomName;
use sb_proto::presence::v1 as pb;
use tonic::{Request, Response, Status};

use crate::query::{MAX_PAGE, decode_cursor, encode_cursor};
use crate::replica::Replica;

/// The page size when a request gives none.
const DEFAULT_PAGE: u32 = 100;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct PresenceGrpc {
    replica: Arc<Replica>,
    guard: AdminGuard,
}

impl PresenceGrpc {
    /// A service reading `replica`, checking callers with `guard`.
    pub fn new(replica: Arc<Replica>, guard: AdminGuard) -> Self {
        Self { replica, guard }
    }
}

#[allow(clippy::result_large_err)] // tonic::Status is what handlers return
fn page_args(limit: u32, cursor: &str) -> Result<(usize, Option<String>), Status> {
    let limit = if limit == 0 { DEFAULT_PAGE } else { limit };
    if limit > MAX_PAGE {
        return Err(Status::invalid_argument(format!("limit must be at most {MAX_PAGE}")));
    }
    let after = if cursor.is_empty() {
        None
    } else {
        Some(decode_cursor(cursor).ok_or_else(|| Status::invalid_argument("cursor is not valid"))?)
    };
    Ok((limit as usize, after))
}

fn online_user(user: sb_events::client::PublicUser) -> pb::OnlineUser {
    pb::OnlineUser { id: user.id, email: user.email }
}

#[tonic::async_trait]
impl pb::presence_service_server::PresenceService for PresenceGrpc {
    async fn list_online(
        &self,
        request: Request<pb::ListOnlineRequest>,
    ) -> Result<Response<pb::ListOnlineResponse>, Status> {
        self.guard.require_admin(request.metadata()).await?;
        let request = request.into_inner();
        let (limit, after) = page_args(request.limit, &request.cursor)?;
        let response = self.replica.read(|state| {
            let (users, more) = state.online_page(after.as_deref(), limit);
            let next_cursor =
                if more { users.last().map(|u| encode_cursor(&u.id)).unwrap_or_default() } else { String::new() };
            pb::ListOnlineResponse {
                users: users.into_iter().map(online_user).collect(),
                count: state.totals().users,
                next_cursor,
            }
        });
        Ok(Response::new(response))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::GetUserResponse>, Status> {
        self.guard.require_admin(request.metadata()).await?;
        let id = request.into_inner().id;
        if id.trim().is_empty() {
            return Err(Status::invalid_argument("id must not be empty"));
        }
        let response = match self.replica.read(|state| state.user_sessions(&id)) {
            Some((user, sessions)) => {
                let mut rooms: Vec<String> = sessions.iter().flat_map(|s| s.rooms.iter().cloned()).collect();
                rooms.sort();
                rooms.dedup();
                pb::GetUserResponse {
                    user: Some(online_user(user)),
                    online: true,
                    sessions: sessions
                        .into_iter()
                        .map(|s| pb::Session {
                            edge_id: s.edge,
                            socket_id: s.socket,
                            connected_at_ms: s.connected_at_ms,
                            rooms: s.rooms,
                            transport: s.transport.map(|t| t.as_str().to_owned()).unwrap_or_default(),
                        })
                        .collect(),
                    rooms,
                }
            }
            None => pb::GetUserResponse {
                user: Some(pb::OnlineUser { id, email: String::new() }),
                online: false,
                sessions: Vec::new(),
                rooms: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn room_members(
        &self,
        request: Request<pb::RoomMembersRequest>,
    ) -> Result<Response<pb::RoomMembersResponse>, Status> {
        self.guard.require_admin(request.metadata()).await?;
        let request = request.into_inner();
        let room = RoomName::parse(request.room).map_err(|error| Status::invalid_argument(error.to_string()))?;
        let (limit, after) = page_args(request.limit, &request.cursor)?;
        let response = self.replica.read(|state| {
            let (members, more, count) = state.room_page(room.as_str(), after.as_deref(), limit);
            let next_cursor =
                if more { members.last().map(|u| encode_cursor(&u.id)).unwrap_or_default() } else { String::new() };
            pb::RoomMembersResponse {
                room: room.as_str().to_owned(),
                members: members.into_iter().map(online_user).collect(),
                count,
                next_cursor,
            }
        });
        Ok(Response::new(response))
    }

    async fn stats(&self, request: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        self.guard.require_admin(request.metadata()).await?;
        let heartbeats = self.replica.heartbeats.lock().clone();
        let response = self.replica.read(|state| {
            let totals = state.totals();
            pb::StatsResponse {
                users: totals.users,
                sockets: totals.sockets,
                rooms: totals.rooms,
                edges: state
                    .edges()
                    .into_iter()
                    .filter(|edge| !edge.down)
                    .map(|edge| pb::EdgeStats {
                        last_heartbeat_ms: heartbeats.get(&edge.edge).copied().unwrap_or(0),
                        edge_id: edge.edge,
                        sockets: edge.sockets,
                        users: edge.users,
                    })
                    .collect(),
            }
        });
        Ok(Response::new(response))
    }
}
