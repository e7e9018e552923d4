//! The `messages` table: batch inserts idempotent on the message id, history
//! pages, and claims of private messages stored while their recipient was
//! offline.
//!
//! All SQL is portable between PostgreSQL and SQLite through sqlx's `Any`
//! driver (numbered parameters, epoch-millisecond `BIGINT`s, 0/1 integer
//! flags). The only backend-specific statement is the pending claim, which
//! uses `FOR UPDATE SKIP LOCKED` on PostgreSQL so concurrent claims split the
//! rows instead of waiting for each other; SQLite serializes writers anyway.

use std::collections::HashSet;

use sb_db::{Backend, Db};
use sb_events::{MessageAccepted, MessageBody, MessageId, MessageKind, MessageTarget, RoomName, Sender, UserId};
use sqlx::Row as _;
use sqlx::any::AnyRow;

/// Most rows per `INSERT` statement: at 11 parameters a row, 1,408 per
/// statement stay far below SQLite's (32,766) and PostgreSQL's (65,535) limits.
const INSERT_CHUNK_ROWS: usize = 128;

/// Splits `rows` into chunks whose sizes are powers of two (at most
/// [`INSERT_CHUNK_ROWS`]), largest first: the multi-row statements then come
/// in eight shapes, which the connection's statement cache keeps prepared
/// (preparing a fresh shape for every batch size cost SQLite an eighth of
/// messaging's instructions).
fn power_of_two_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = (1usize << rest.len().ilog2()).min(INSERT_CHUNK_ROWS);
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// Columns read back for history pages and claims, in [`row_to_message`] order.
const MESSAGE_COLUMNS: &str = "id, kind, room, sender_id, sender_email, recipient, body, created_at";

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `before` names no message of the requested room or conversation.
    #[error("before names no message in this history")]
    UnknownBefore,
    /// A row holds a value this version does not understand (a bug or a
    /// newer schema).
    #[error("stored message {id:?} cannot be read: {reason}")]
    CorruptRow {
        /// The message id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database failed.
    #[error("{action}: {source}")]
    Db {
        /// What we were doing (verb + object).
        action: &'static str,
        /// What sqlx said.
        source: sqlx::Error,
    },
}

fn db_error(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Db { action, source }
}

/// One message to store, and whether it still needs a pending delivery.
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    /// The message as it was accepted.
    pub message: &'a MessageAccepted,
    /// Whether the message needs no pending delivery: `false` only for a
    /// private message whose recipient was not known to be online.
    pub delivered: bool,
}

/// What a batch insert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Ids written by this call.
    pub inserted: HashSet<MessageId>,
    /// Rows that already existed (a redelivery or a re-published id).
    pub duplicates: usize,
}

/// Which messages a history page reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    /// One room's messages.
    Room(RoomName),
    /// The private messages between two users (in either direction).
    Conversation(UserId, UserId),
}

/// One page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPageRows {
    /// At most `limit` messages, newest first (without an origin).
    pub messages: Vec<MessageAccepted>,
    /// Whether older messages exist beyond this page.
    pub has_more: bool,
}

/// The key of the conversation between two users: the sorted pair as a JSON
/// array, so `(a, b)` and `(b, a)` meet and no pair of ids can collide.
pub fn conversation_key(user_a: &str, user_b: &str) -> String {
    let (low, high) = if user_a <= user_b { (user_a, user_b) } else { (user_b, user_a) };
    serde_json::to_string(&[low, high]).unwrap_or_default()
}

/// Message storage on top of a [`Db`] pool.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store on `db` (already migrated).
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The pool's backend.
    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// Stores `rows` in one transaction, skipping ids that already exist.
    /// Ids in `now_delivered` that were already stored as pending are marked
    /// delivered (a redelivered private message whose recipient has come
    /// online meanwhile gets it live, so it must not be handed out again).
    pub async fn insert_batch(
        &self,
        rows: &[NewRow<'_>],
        now_delivered: &[&MessageId],
    ) -> Result<InsertOutcome, StoreError> {
        let mut outcome = InsertOutcome::default();
        if rows.is_empty() {
            return Ok(outcome);
        }
        let stored_at = sb_events::timestamp::now_ms();
        let mut transaction = self.db.pool.begin().await.map_err(db_error("begin message batch"))?;
        for chunk in power_of_two_chunks(rows) {
            let sql = insert_sql(self.db.backend, chunk.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                let message = row.message;
                let recipient = message.target.recipient();
                query = query
                    .bind(message.id.as_str().to_owned())
                    .bind(message.kind().as_str())
                    .bind(message.target.room().map(|room| room.as_str().to_owned()))
                    .bind(message.from.id.as_str().to_owned())
                    .bind(message.from.email.clone())
                    .bind(recipient.map(|to| to.as_str().to_owned()))
                    .bind(recipient.map(|to| conversation_key(message.from.id.as_str(), to.as_str())))
                    .bind(message.message.as_str().to_owned())
                    .bind(message.timestamp_ms)
                    .bind(i32::from(row.delivered))
                    .bind(stored_at);
            }
            let inserted = query.fetch_all(&mut *transaction).await.map_err(db_error("insert messages"))?;
            for row in inserted {
                let id: String = row.try_get("id").map_err(db_error("read inserted id"))?;
                let id = MessageId::parse("id", id).map_err(|_| StoreError::CorruptRow {
                    id: String::new(),
                    reason: "an inserted id is not a message id".to_owned(),
                })?;
                outcome.inserted.insert(id);
            }
        }
        let mut already_marked = 0usize;
        let late_delivered: Vec<&MessageId> =
            now_delivered.iter().copied().filter(|id| !outcome.inserted.contains(*id)).collect();
        for chunk in power_of_two_chunks(&late_delivered) {
            let placeholders = self.db.backend.param_list(1, chunk.len());
            let sql = format!("UPDATE messages SET delivered = 1 WHERE delivered = 0 AND id IN ({placeholders})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str().to_owned());
            }
            let result = query.execute(&mut *transaction).await.map_err(db_error("mark messages delivered"))?;
            already_marked += usize::try_from(result.rows_affected()).unwrap_or(0);
        }
        transaction.commit().await.map_err(db_error("commit message batch"))?;
        if already_marked > 0 {
            tracing::debug!(already_marked, "redelivered pending messages marked delivered");
        }
        let unique_ids: HashSet<&MessageId> = rows.iter().map(|row| &row.message.id).collect();
        outcome.duplicates = unique_ids.len() - outcome.inserted.len();
        Ok(outcome)
    }

    /// A page of history, newest first: messages strictly older than
    /// `before` (a message id of the same scope) in `(created_at, id)` order,
    /// so equal timestamps still page stably.
    pub async fn history(
        &self,
        scope: &HistoryScope,
        before: Option<&MessageId>,
        limit: u32,
    ) -> Result<HistoryPageRows, StoreError> {
        let (scope_sql, scope_value) = match scope {
            HistoryScope::Room(room) => ("kind = 'room' AND room = $1", room.as_str().to_owned()),
            HistoryScope::Conversation(a, b) => {
                ("kind = 'private' AND conversation = $1", conversation_key(a.as_str(), b.as_str()))
            }
        };
        let fetch = i64::from(limit) + 1;
        let rows = match before {
            None => {
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {scope_sql} \
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(scope_value)
                    .bind(fetch)
                    .fetch_all(&self.db.pool)
                    .await
                    .map_err(db_error("read history"))?
            }
            Some(before) => {
                let anchor_sql = format!("SELECT created_at FROM messages WHERE {scope_sql} AND id = $2");
                let anchor = sqlx::query(sqlx::AssertSqlSafe(anchor_sql))
                    .bind(scope_value.clone())
                    .bind(before.as_str().to_owned())
                    .fetch_optional(&self.db.pool)
                    .await
                    .map_err(db_error("read history anchor"))?
                    .ok_or(StoreError::UnknownBefore)?;
                let anchor_ms: i64 = anchor.try_get("created_at").map_err(db_error("read history anchor"))?;
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {scope_sql} \
                     AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
                     ORDER BY created_at DESC, id DESC LIMIT $4"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(scope_value)
                    .bind(anchor_ms)
                    .bind(before.as_str().to_owned())
                    .bind(fetch)
                    .fetch_all(&self.db.pool)
                    .await
                    .map_err(db_error("read history"))?
            }
        };
        let mut messages = rows.iter().map(row_to_message).collect::<Result<Vec<_>, _>>()?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        Ok(HistoryPageRows { messages, has_more })
    }

    /// Hands out up to `limit` of `user`'s pending private messages, oldest
    /// first, and marks them delivered in the same statement: two concurrent
    /// claims never return the same message.
    pub async fn claim_pending(&self, user: &UserId, limit: u32) -> Result<Vec<MessageAccepted>, StoreError> {
        let lock = match self.db.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE messages SET delivered = 1 WHERE delivered = 0 AND id IN (\
               SELECT id FROM messages WHERE recipient = $1 AND delivered = 0 \
               ORDER BY created_at, id LIMIT $2{lock}\
             ) RETURNING {MESSAGE_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.as_str().to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.db.pool)
            .await
            .map_err(db_error("claim pending messages"))?;
        let mut messages = rows.iter().map(row_to_message).collect::<Result<Vec<_>, _>>()?;
        // RETURNING has no order of its own.
        messages.sort_by(|a, b| (a.timestamp_ms, &a.id).cmp(&(b.timestamp_ms, &b.id)));
        Ok(messages)
    }
}

fn insert_sql(backend: Backend, rows: usize) -> String {
    const COLUMNS: usize = 11;
    let mut sql = String::from(
        "INSERT INTO messages (id, kind, room, sender_id, sender_email, recipient, conversation, body, created_at, delivered, stored_at) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..COLUMNS {
            if column > 0 {
                sql.push_str(", ");
            }
            backend.push_param(&mut sql, row * COLUMNS + column + 1);
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
    sql
}

fn row_to_message(row: &AnyRow) -> Result<MessageAccepted, StoreError> {
    fn column<T>(row: &AnyRow, name: &str) -> Result<T, StoreError>
    where
        T: for<'r> sqlx::Decode<'r, sb_db::Any> + sqlx::Type<sb_db::Any>,
    {
        row.try_get(name).map_err(db_error("read stored message"))
    }
    let id: String = column(row, "id")?;
    let corrupt = |reason: String| StoreError::CorruptRow { id: id.clone(), reason };
    let kind_text: String = column(row, "kind")?;
    let kind = MessageKind::parse(&kind_text).ok_or_else(|| corrupt(format!("unknown kind {kind_text:?}")))?;
    let target = MessageTarget::from_parts(kind, column(row, "room")?, column(row, "recipient")?)
        .map_err(|error| corrupt(error.to_string()))?;
    let sender_id: String = column(row, "sender_id")?;
    let body: String = column(row, "body")?;
    Ok(MessageAccepted {
        target,
        from: Sender {
            id: UserId::parse(sender_id).map_err(|error| corrupt(format!("sender: {error}")))?,
            email: column(row, "sender_email")?,
        },
        message: MessageBody::try_from(body).map_err(|error| corrupt(error.to_string()))?,
        timestamp_ms: column(row, "created_at")?,
        origin: None,
        id: MessageId::parse("id", id.clone()).map_err(|error| corrupt(error.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_key_is_symmetric_and_unambiguous() {
        assert_eq!(conversation_key("a", "b"), conversation_key("b", "a"));
        assert_eq!(conversation_key("a", "b"), r#"["a","b"]"#);
        assert_ne!(conversation_key("a,b", "c"), conversation_key("a", "b,c"));
        assert_ne!(conversation_key("a\",\"b", "c"), conversation_key("a", "b\",\"c"));
    }

    #[test]
    fn chunks_are_powers_of_two_largest_first() {
        let rows: Vec<usize> = (0..300).collect();
        let sizes: Vec<usize> = power_of_two_chunks(&rows).map(<[usize]>::len).collect();
        assert_eq!(sizes, [128, 128, 32, 8, 4]);
        assert_eq!(power_of_two_chunks(&rows[..37]).map(<[usize]>::len).collect::<Vec<_>>(), [32, 4, 1]);
        assert_eq!(power_of_two_chunks::<usize>(&[]).count(), 0);
        let joined: Vec<usize> = power_of_two_chunks(&rows).flatten().copied().collect();
        assert_eq!(joined, rows);
    }

    #[test]
    fn insert_sql_numbers_every_parameter() {
        let sqlite = insert_sql(Backend::Sqlite, 2);
        assert!(sqlite.contains("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?,"), "{sqlite}");
        let sql = insert_sql(Backend::Postgres, 2);
        assert!(sql.contains("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11), ($12,"), "{sql}");
        assert!(sql.ends_with(
            "($12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) ON CONFLICT (id) DO NOTHING RETURNING id"
        ));
    }
}
