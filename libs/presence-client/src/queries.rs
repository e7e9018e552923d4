//! [`PresenceQueries`]: request/reply questions to presence on
//! `<p>.presence.query` (answered by one replica of the `presence` queue group).

use sb_events::RoomName;
use sb_events::bus::{Bus, BusError};
use sb_events::client::OnlineUsers;
use sb_events::presence::{OnlineAmong, PresenceQuery, RoomMembers};

/// The most users one `online_users` page holds.
pub const MAX_PAGE: u32 = 1000;
/// The page size when the client gives none.
pub const DEFAULT_PAGE: u32 = 100;

/// Why a presence query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No presence replica answered, it answered with an error, or the
    /// answer did not decode.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Asks presence questions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PresenceQueries {
    bus: Bus,
}

impl PresenceQueries {
    /// Queries over `bus`.
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }

    /// One page of online users cluster-wide, ordered by id. `limit` 0 means
    /// [`DEFAULT_PAGE`]; larger than [`MAX_PAGE`] is clamped. `cursor` is the
    /// previous page's `cursor`.
    pub async fn online_users(&self, limit: u32, cursor: Option<String>) -> Result<OnlineUsers, QueryError> {
        self.online_users_after(limit, cursor, None).await
    }

    /// As [`Self::online_users`], answered only once presence applied the
    /// stream up to `after_seq` — pass the asking socket's
    /// [`crate::StoredSeq`] from [`crate::Reporter::session_opened`] so the
    /// list includes the caller even right after it connected.
    pub async fn online_users_after(
        &self,
        limit: u32,
        cursor: Option<String>,
        after_seq: Option<u64>,
    ) -> Result<OnlineUsers, QueryError> {
        let limit = if limit == 0 { DEFAULT_PAGE } else { limit.min(MAX_PAGE) };
        let query = PresenceQuery::OnlineUsers { limit, cursor, after_seq };
        Ok(self.bus.request(self.bus.subjects.presence_query(), &query).await?)
    }

    /// A room's members cluster-wide. With `after_seq` (from
    /// [`crate::Reporter::room_joined`]) presence answers only once it has
    /// applied the presence stream up to that sequence.
    pub async fn room_members(&self, room: &RoomName, after_seq: Option<u64>) -> Result<RoomMembers, QueryError> {
        let query = PresenceQuery::RoomMembers { room: room.as_str().to_owned(), after_seq };
        Ok(self.bus.request(self.bus.subjects.presence_query(), &query).await?)
    }

    /// Which of `users` have at least one socket anywhere.
    pub async fn online_among(&self, users: Vec<String>) -> Result<OnlineAmong, QueryError> {
        let query = PresenceQuery::OnlineAmong { users };
        Ok(self.bus.request(self.bus.subjects.presence_query(), &query).await?)
    }
}
