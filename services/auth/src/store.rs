//! The users table, on PostgreSQL or SQLite through sqlx's `Any` driver.
//!
//! Every query uses numbered parameters and portable types (see `sb_db`).
//! Static queries go through sqlx's per-connection statement cache, so the
//! hot lookup of VerifyToken is prepared once per pooled connection and then
//! only executed: one primary-key search.

use sb_db::Db;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use tracing::Instrument as _;

pub use sb_authn::Role;

/// A stored user, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Text id (UUIDv7 when created here).
    pub id: String,
    /// Lower-cased email.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Current token version; tokens carrying another one are revoked.
    pub token_version: i64,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// Last change, ms since the Unix epoch.
    pub updated_at_ms: i64,
}

impl UserRecord {
    /// The proto message.
    pub fn into_proto(self) -> sb_proto::auth::v1::User {
        sb_proto::auth::v1::User {
            id: self.id,
            email: self.email,
            role: self.role.to_proto(),
            token_version: self.token_version,
            disabled: self.disabled,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }
}

/// A user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Its id.
    pub id: String,
    /// Its (normalized) email.
    pub email: String,
    /// Argon2 PHC string, or `None` for a user who cannot log in.
    pub password_hash: Option<String>,
    /// Its role.
    pub role: Role,
}

/// A load-test batch for [`Store::seed_users`].
#[derive(Debug, Clone)]
pub struct SeedPlan {
    /// Ids are `<id_prefix><n>` for n in 1..=count.
    pub id_prefix: String,
    /// Emails are `<id_prefix><n>@<email_domain>`, lower-cased.
    pub email_domain: String,
    /// How many users.
    pub count: u32,
    /// Every n-th user is an admin; 0 for none.
    pub admin_every: u32,
    /// Shared password hash, or none.
    pub password_hash: Option<String>,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The email belongs to another user.
    #[error("a user with this email already exists")]
    EmailTaken,
    /// The id belongs to another user.
    #[error("a user with this id already exists")]
    IdTaken,
    /// A stored row does not hold what the schema promises.
    #[error("stored user row is malformed: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("query users: {0}")]
    Db(#[from] sqlx::Error),
}

/// Rows per multi-row INSERT when seeding: 3 parameters each plus 2 shared
/// stays far below SQLite's 32766 and PostgreSQL's 65535 parameter limits.
const SEED_BATCH: u32 = 1000;

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    let role: String = row.try_get(2)?;
    let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?;
    let disabled: i64 = row.try_get(4)?;
    Ok(UserRecord {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        role,
        token_version: row.try_get(3)?,
        disabled: disabled != 0,
        created_at_ms: row.try_get(5)?,
        updated_at_ms: row.try_get(6)?,
    })
}

fn map_insert_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(database_error) = &error
        && database_error.is_unique_violation()
    {
        let constraint = database_error.constraint().unwrap_or_default();
        let message = database_error.message();
        if constraint.contains("email") || message.contains("email") {
            return StoreError::EmailTaken;
        }
        return StoreError::IdTaken;
    }
    StoreError::Db(error)
}

/// The users table.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Wraps a migrated database.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// One user by id: VerifyToken's lookup.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .db
            .retry_lost(|| {
                sqlx::query(
                    "SELECT id, email, role, token_version, disabled, created_at_ms, updated_at_ms FROM users WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.db.pool)
            })
            .instrument(self.db.span("SELECT", "users"))
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// One user by (normalized) email, with its password hash.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<(UserRecord, Option<String>)>, StoreError> {
        let row = self
            .db
            .retry_lost(|| {
                sqlx::query(
                    "SELECT id, email, role, token_version, disabled, created_at_ms, updated_at_ms, password_hash \
                     FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&self.db.pool)
            })
            .instrument(self.db.span("SELECT", "users"))
            .await?;
        match row {
            Some(row) => Ok(Some((user_from_row(&row)?, row.try_get(7)?))),
            None => Ok(None),
        }
    }

    /// Inserts a user; a taken email or id is reported as such.
    pub async fn insert_user(&self, user: NewUser, now_ms: i64) -> Result<UserRecord, StoreError> {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, token_version, disabled, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, 0, 0, $5, $5)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(user.password_hash.as_deref())
        .bind(user.role.as_str())
        .bind(now_ms)
        .execute(&self.db.pool)
        .await
        .map_err(map_insert_error)?;
        Ok(UserRecord {
            id: user.id,
            email: user.email,
            role: user.role,
            token_version: 0,
            disabled: false,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        })
    }

    /// Up to `limit` users with ids after `after`, ordered by id.
    pub async fn list_users(&self, after: Option<&str>, limit: u32) -> Result<Vec<UserRecord>, StoreError> {
        let rows = match after {
            Some(after) => {
                sqlx::query(
                    "SELECT id, email, role, token_version, disabled, created_at_ms, updated_at_ms FROM users \
                     WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.db.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT id, email, role, token_version, disabled, created_at_ms, updated_at_ms FROM users \
                     ORDER BY id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.db.pool)
                .await?
            }
        };
        rows.iter().map(user_from_row).collect()
    }

    /// Bumps a user's token version; `None` when there is no such user.
    /// With `disable`, also sets (or clears) the disabled flag in the same
    /// statement.
    pub async fn bump_token_version(
        &self,
        id: &str,
        now_ms: i64,
        disable: Option<bool>,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = match disable {
            None => {
                sqlx::query(
                    "UPDATE users SET token_version = token_version + 1, updated_at_ms = $2 WHERE id = $1 \
                     RETURNING id, email, role, token_version, disabled, created_at_ms, updated_at_ms",
                )
                .bind(id)
                .bind(now_ms)
                .fetch_optional(&self.db.pool)
                .await?
            }
            Some(disabled) => {
                sqlx::query(
                    "UPDATE users SET token_version = token_version + 1, disabled = $3, updated_at_ms = $2 \
                     WHERE id = $1 \
                     RETURNING id, email, role, token_version, disabled, created_at_ms, updated_at_ms",
                )
                .bind(id)
                .bind(now_ms)
                .bind(i32::from(disabled))
                .fetch_optional(&self.db.pool)
                .await?
            }
        };
        row.as_ref().map(user_from_row).transpose()
    }

    /// Sets the disabled flag without touching the token version.
    pub async fn set_disabled(&self, id: &str, disabled: bool, now_ms: i64) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "UPDATE users SET disabled = $2, updated_at_ms = $3 WHERE id = $1 \
             RETURNING id, email, role, token_version, disabled, created_at_ms, updated_at_ms",
        )
        .bind(id)
        .bind(i32::from(disabled))
        .bind(now_ms)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Changes a user's role.
    pub async fn set_role(&self, id: &str, role: Role, now_ms: i64) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "UPDATE users SET role = $2, updated_at_ms = $3 WHERE id = $1 \
             RETURNING id, email, role, token_version, disabled, created_at_ms, updated_at_ms",
        )
        .bind(id)
        .bind(role.as_str())
        .bind(now_ms)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// `(id, email)` of the users among `ids` that exist.
    pub async fn lookup_public(&self, ids: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = self.db.backend.param_list(1, ids.len());
        let sql = format!("SELECT id, email FROM users WHERE id IN ({placeholders}) ORDER BY id");
        let rows = self
            .db
            .retry_lost(|| {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).persistent(false);
                for id in ids {
                    query = query.bind(id);
                }
                query.fetch_all(&self.db.pool)
            })
            .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Inserts the users of `plan` in one transaction with multi-row
    /// INSERTs; ids (or emails) that exist are skipped. Returns how many
    /// were created.
    pub async fn seed_users(&self, plan: &SeedPlan, now_ms: i64) -> Result<u64, StoreError> {
        let mut transaction = self.db.pool.begin().await?;
        let mut created = 0;
        let mut first = 1;
        while first <= plan.count {
            let last = plan.count.min(first + SEED_BATCH - 1);
            let rows = last - first + 1;
            let mut sql = String::with_capacity(160 + rows as usize * 24);
            sql.push_str(
                "INSERT INTO users (id, email, password_hash, role, token_version, disabled, created_at_ms, \
                 updated_at_ms) VALUES ",
            );
            for row in 0..rows {
                let base = 3 + row * 3;
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${base}, ${}, $1, ${}, 0, 0, $2, $2)", base + 1, base + 2));
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(plan.password_hash.as_deref()).bind(now_ms);
            for n in first..=last {
                let id = format!("{}{n}", plan.id_prefix);
                let email = format!("{id}@{}", plan.email_domain).to_lowercase();
                let admin = plan.admin_every != 0 && n % plan.admin_every == 0;
                let role = if admin { Role::Admin } else { Role::User };
                query = query.bind(id).bind(email).bind(role.as_str());
            }
            created += query.execute(&mut *transaction).await?.rows_affected();
            first = last + 1;
        }
        transaction.commit().await?;
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_text_round_trips() {
        for role in [Role::User, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
