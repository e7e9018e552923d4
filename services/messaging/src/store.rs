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
use sb_events::client::{NewMessage, PublicUser};
use sb_events::ingest::MessageKind;
use sqlx::Row as _;
use sqlx::any::AnyRow;

/// Rows per `INSERT` statement: 10 parameters each keeps a statement far
/// below SQLite's and PostgreSQL's parameter limits.
const INSERT_CHUNK_ROWS: usize = 200;

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
    #[error("stored message {id} has unknown kind {kind:?}")]
    CorruptRow {
        /// The message id.
        id: String,
        /// What the `kind` column holds.
        kind: String,
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

/// One message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// UUIDv7 from the edge.
    pub id: String,
    /// Who receives it.
    pub kind: MessageKind,
    /// The room of a room message.
    pub room: Option<String>,
    /// The sender.
    pub from: PublicUser,
    /// The recipient of a private message.
    pub recipient: Option<String>,
    /// The text.
    pub body: String,
    /// Acceptance time at the edge, epoch milliseconds.
    pub created_at_ms: i64,
    /// Whether the message needs no pending delivery: `false` only for a
    /// private message whose recipient was not known to be online.
    pub delivered: bool,
}

/// A stored message as history and claims return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Message id.
    pub id: String,
    /// Its kind.
    pub kind: MessageKind,
    /// The room of a room message.
    pub room: Option<String>,
    /// The sender.
    pub from: PublicUser,
    /// The recipient of a private message.
    pub recipient: Option<String>,
    /// The text.
    pub body: String,
    /// Acceptance time, epoch milliseconds.
    pub created_at_ms: i64,
}

impl StoredMessage {
    /// The message in the `new_message` shape clients see.
    pub fn to_new_message(&self) -> NewMessage {
        NewMessage {
            id: self.id.clone(),
            from: self.from.clone(),
            room: self.room.clone(),
            to: self.recipient.clone(),
            message: self.body.clone(),
            timestamp: sb_events::timestamp::rfc3339_ms(self.created_at_ms),
        }
    }
}

/// What a batch insert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Ids written by this call.
    pub inserted: HashSet<String>,
    /// Rows that already existed (a redelivery or a re-published id).
    pub duplicates: usize,
}

/// Which messages a history page reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScopeKey {
    /// One room's messages.
    Room(String),
    /// The private messages between two users (in either direction).
    Conversation(String, String),
}

/// One page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPageRows {
    /// At most `limit` messages, newest first.
    pub messages: Vec<StoredMessage>,
    /// Whether older messages exist beyond this page.
    pub has_more: bool,
}

/// The key of the conversation between two users: the sorted pair as a JSON
/// array, so `(a, b)` and `(b, a)` meet and no pair of ids can collide.
pub fn conversation_key(user_a: &str, user_b: &str) -> String {
    let (low, high) = if user_a <= user_b { (user_a, user_b) } else { (user_b, user_a) };
    serde_json::Value::Array(vec![low.into(), high.into()]).to_string()
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
        rows: &[MessageRow],
        now_delivered: &[String],
    ) -> Result<InsertOutcome, StoreError> {
        let mut outcome = InsertOutcome::default();
        if rows.is_empty() {
            return Ok(outcome);
        }
        let stored_at = sb_events::timestamp::now_ms();
        let mut transaction = self.db.pool.begin().await.map_err(db_error("begin message batch"))?;
        for chunk in rows.chunks(INSERT_CHUNK_ROWS) {
            let sql = insert_sql(self.db.backend, chunk.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                query = query
                    .bind(row.id.clone())
                    .bind(row.kind.as_str())
                    .bind(row.room.clone())
                    .bind(row.from.id.clone())
                    .bind(row.from.email.clone())
                    .bind(row.recipient.clone())
                    .bind(row.recipient.as_ref().map(|to| conversation_key(&row.from.id, to)))
                    .bind(row.body.clone())
                    .bind(row.created_at_ms)
                    .bind(i32::from(row.delivered))
                    .bind(stored_at);
            }
            let inserted = query.fetch_all(&mut *transaction).await.map_err(db_error("insert messages"))?;
            for row in inserted {
                let id: String = row.try_get("id").map_err(db_error("read inserted id"))?;
                outcome.inserted.insert(id);
            }
        }
        let mut already_marked = 0usize;
        let late_delivered: Vec<&String> = now_delivered.iter().filter(|id| !outcome.inserted.contains(*id)).collect();
        for chunk in late_delivered.chunks(INSERT_CHUNK_ROWS) {
            let placeholders = self.db.backend.param_list(1, chunk.len());
            let sql = format!("UPDATE messages SET delivered = 1 WHERE delivered = 0 AND id IN ({placeholders})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind((*id).clone());
            }
            let result = query.execute(&mut *transaction).await.map_err(db_error("mark messages delivered"))?;
            already_marked += usize::try_from(result.rows_affected()).unwrap_or(0);
        }
        transaction.commit().await.map_err(db_error("commit message batch"))?;
        if already_marked > 0 {
            tracing::debug!(already_marked, "redelivered pending messages marked delivered");
        }
        let unique_ids: HashSet<&str> = rows.iter().map(|row| row.id.as_str()).collect();
        outcome.duplicates = unique_ids.len() - outcome.inserted.len();
        Ok(outcome)
    }

    /// A page of history, newest first: messages strictly older than
    /// `before` (a message id of the same scope) in `(created_at, id)` order,
    /// so equal timestamps still page stably.
    pub async fn history(
        &self,
        scope: &HistoryScopeKey,
        before: Option<&str>,
        limit: u32,
    ) -> Result<HistoryPageRows, StoreError> {
        let (scope_sql, scope_value) = match scope {
            HistoryScopeKey::Room(room) => ("kind = 'room' AND room = $1", room.clone()),
            HistoryScopeKey::Conversation(a, b) => ("kind = 'private' AND conversation = $1", conversation_key(a, b)),
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
                    .bind(before.to_owned())
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
                    .bind(before.to_owned())
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
    pub async fn claim_pending(&self, user: &str, limit: u32) -> Result<Vec<StoredMessage>, StoreError> {
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
            .bind(user.to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.db.pool)
            .await
            .map_err(db_error("claim pending messages"))?;
        let mut messages = rows.iter().map(row_to_message).collect::<Result<Vec<_>, _>>()?;
        // RETURNING has no order of its own.
        messages.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
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

fn row_to_message(row: &AnyRow) -> Result<StoredMessage, StoreError> {
    fn column<T>(row: &AnyRow, name: &str) -> Result<T, StoreError>
    where
        T: for<'r> sqlx::Decode<'r, sb_db::Any> + sqlx::Type<sb_db::Any>,
    {
        row.try_get(name).map_err(db_error("read stored message"))
    }
    let id: String = column(row, "id")?;
    let kind_text: String = column(row, "kind")?;
    let kind =
        MessageKind::parse(&kind_text).ok_or_else(|| StoreError::CorruptRow { id: id.clone(), kind: kind_text })?;
    Ok(StoredMessage {
        kind,
        room: column(row, "room")?,
        from: PublicUser { id: column(row, "sender_id")?, email: column(row, "sender_email")? },
        recipient: column(row, "recipient")?,
        body: column(row, "body")?,
        created_at_ms: column(row, "created_at")?,
        id,
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
