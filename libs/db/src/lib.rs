//! One way for every service to reach its database.
//!
//! `DATABASE_URL` picks the backend: `postgres://…` for production,
//! `sqlite:path.db` for zero-setup local runs (the file is created). Services
//! write portable SQL against sqlx's `Any` driver (numbered `$1` parameters,
//! or [`Backend::push_param`] for long generated statements,
//! `BIGINT` epoch-millisecond timestamps, integer flags), and keep one
//! migration directory per backend (`migrations/postgres`,
//! `migrations/sqlite`), since DDL differs.
//!
//! Each service owns its own database (or SQLite file): migrations of two
//! services must not share one `_sqlx_migrations` table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sb_config::DatabaseArgs;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
pub use sqlx::{Any, AnyPool};

/// A pooled connection idle at least this long is pinged before reuse.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// Which database engine a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

impl Backend {
    /// The OpenTelemetry `db.system.name` of the engine.
    pub fn system_name(self) -> &'static str {
        match self {
            Self::Postgres => "postgresql",
            Self::Sqlite => "sqlite",
        }
    }
}

/// Why the database could not be reached or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// `DATABASE_URL` is neither PostgreSQL nor SQLite.
    #[error("DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got a URL starting with {scheme:?})")]
    UnsupportedUrl {
        /// The part before the first `:`.
        scheme: String,
    },
    /// Connecting failed.
    #[error("connect to the {backend:?} database: {source}")]
    Connect {
        /// Which engine.
        backend: Backend,
        /// What sqlx said.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A connection pool and the engine behind it.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool; use numbered (`$1`) parameters, which both engines accept.
    pub pool: AnyPool,
    /// The engine.
    pub backend: Backend,
    /// Until when (ms since [`Suspect::epoch`]) every connection handed out
    /// is pinged first: set when a statement lost its connection.
    suspect: Arc<Suspect>,
}

/// After a statement lost its connection (a database restart or fail-over),
/// the pool's other idle connections are likely dead too: for
/// [`SUSPECT_FOR`] every connection is pinged before it is handed out, and a
/// dead one is dropped instead of failing the next statement.
#[derive(Debug)]
struct Suspect {
    epoch: std::time::Instant,
    until_ms: AtomicU64,
}

/// How long connections are pinged before use after one was found lost.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

impl Suspect {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn mark(&self) {
        let until = self.now_ms() + u64::try_from(SUSPECT_FOR.as_millis()).unwrap_or(u64::MAX);
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    fn active(&self) -> bool {
        self.now_ms() < self.until_ms.load(Ordering::Relaxed)
    }
}

/// Whether `error` means the statement's connection is gone (the server
/// restarted, failed over or cut it) rather than that the statement failed:
/// an I/O or protocol error, or PostgreSQL's connection-exception (`08…`)
/// and operator-intervention (`57P01` admin shutdown, `57P02` crash
/// shutdown, `57P03` cannot connect now) codes.
pub fn is_connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

impl Backend {
    /// Appends the `n`th (1-based) bind parameter of a statement to `sql`:
    /// `$n` on PostgreSQL, a plain `?` on SQLite. SQLite looks numbered and
    /// named parameters up by name, linearly, when it prepares and when sqlx
    /// binds (quadratic in a multi-row INSERT: 10 % of messaging's CPU samples
    /// at 6 000 private msg/s); plain `?`s need no lookup but bind strictly in order, so
    /// a statement built with this must use each parameter once, in order.
    pub fn push_param(self, sql: &mut String, n: usize) {
        use std::fmt::Write as _;
        match self {
            Self::Postgres => {
                let _ = write!(sql, "${n}");
            }
            Self::Sqlite => sql.push('?'),
        }
    }

    /// `count` parameters from the `first`, comma-separated (for `IN (…)`).
    pub fn param_list(self, first: usize, count: usize) -> String {
        let mut sql = String::with_capacity(count * 5);
        for n in first..first + count {
            if n > first {
                sql.push_str(", ");
            }
            self.push_param(&mut sql, n);
        }
        sql
    }
}

impl Db {
    /// The client span of one statement, `<operation> <collection>` (e.g.
    /// `SELECT users`), with the OpenTelemetry `db.*` attributes; instrument
    /// the statement with it. Outside any span it is `Span::none()`: a
    /// statement no request caused starts no trace.
    pub fn span(&self, operation: &'static str, collection: &'static str) -> tracing::Span {
        if tracing::Span::current().is_none() {
            return tracing::Span::none();
        }
        tracing::info_span!(
            "db.query",
            otel.name = %format_args!("{operation} {collection}"),
            otel.kind = "client",
            db.system.name = self.backend.system_name(),
            db.operation.name = operation,
            db.collection.name = collection,
        )
    }

    /// Connects to `args.url`. SQLite files are created when missing and run
    /// in WAL mode with a busy timeout, so readers never block the writer.
    pub async fn connect(args: &DatabaseArgs) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let url = args.url.trim();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            let scheme = url.split(':').next().unwrap_or_default().to_owned();
            return Err(DbError::UnsupportedUrl { scheme });
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options: AnyConnectOptions = url.parse().map_err(|source| DbError::Connect { backend, source })?;
        // sqlx pings every connection it hands out by default: one extra round
        // trip (PostgreSQL) or worker-thread hop (SQLite) per query. Ping only
        // connections that sat idle long enough to have been cut (database
        // restart, proxy timeout); a failed ping drops that connection.
        let suspect = Arc::new(Suspect { epoch: std::time::Instant::now(), until_ms: AtomicU64::new(0) });
        let check = suspect.clone();
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(args.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .before_acquire(move |connection, meta| {
                let suspect = check.active();
                Box::pin(async move {
                    if meta.idle_for < PING_IF_IDLE_FOR && !suspect {
                        return Ok(true);
                    }
                    use sqlx::Connection as _;
                    Ok(connection.ping().await.is_ok())
                })
            });
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|connection, _meta| {
                Box::pin(async move {
                    use sqlx::Executor as _;
                    connection
                        .execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options.connect_with(options).await.map_err(|source| DbError::Connect { backend, source })?;
        Ok(Self { pool, backend, suspect })
    }

    /// Runs `read`, a statement that may run twice (a query, or a write that
    /// is idempotent): if it lost its connection (see [`is_connection_lost`]),
    /// the pool pings connections before use for a while and `read` runs once
    /// more, on a live connection. So the first requests after a database
    /// restart are answered instead of failing once per pooled connection.
    pub async fn retry_lost<T, F, Fut>(&self, mut read: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        match read().await {
            Err(error) if is_connection_lost(&error) => {
                tracing::warn!(%error, "database connection lost; checking the pool's connections and retrying once");
                self.suspect.mark();
                read().await
            }
            other => other,
        }
    }

    /// Runs the migrations for this engine.
    pub async fn migrate(&self, postgres: &Migrator, sqlite: &Migrator) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Postgres => postgres,
            Backend::Sqlite => sqlite,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    /// Waits at most 5 s for connections still in use (a stuck task holding
    /// one must not keep the process from exiting).
    pub async fn close(&self) {
        const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
        if tokio::time::timeout(CLOSE_TIMEOUT, self.pool.close()).await.is_err() {
            tracing::warn!(timeout = ?CLOSE_TIMEOUT, "database connections still in use at shutdown; closing anyway");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, is_connection_lost};

    #[test]
    fn lost_connections_are_told_from_failed_statements() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert!(is_connection_lost(&sqlx::Error::Io(reset)));
        assert!(is_connection_lost(&sqlx::Error::Protocol("unexpected end of stream".into())));
        assert!(!is_connection_lost(&sqlx::Error::RowNotFound));
        assert!(!is_connection_lost(&sqlx::Error::PoolTimedOut));
        assert!(!is_connection_lost(&sqlx::Error::ColumnNotFound("id".into())));
    }

    #[test]
    fn parameters_are_numbered_on_postgres_and_positional_on_sqlite() {
        assert_eq!(Backend::Postgres.param_list(3, 3), "$3, $4, $5");
        assert_eq!(Backend::Sqlite.param_list(3, 3), "?, ?, ?");
        assert_eq!(Backend::Sqlite.param_list(1, 0), "");
        let mut sql = String::from("x = ");
        Backend::Postgres.push_param(&mut sql, 12);
        assert_eq!(sql, "x = $12");
    }
}
