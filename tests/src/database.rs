//! A fresh database per test, on PostgreSQL or SQLite.

use anyhow::Context as _;
use sqlx::Connection as _;
use sqlx::Executor as _;

/// Which engine a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// A new database on the PostgreSQL server at `TEST_DATABASE_URL`.
    Postgres,
    /// A new SQLite file in a temporary directory.
    Sqlite,
}

/// A database that exists for one test. PostgreSQL databases are dropped on
/// drop (best effort); SQLite files go with their temp dir.
pub struct TestDatabase {
    /// `DATABASE_URL` for the service under test.
    pub url: String,
    kind: DbKind,
    name: String,
    /// The server's admin URL (where the database was created and is dropped).
    admin: String,
    _dir: Option<tempfile::TempDir>,
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl TestDatabase {
    /// Creates an empty database of `kind`.
    pub async fn create(kind: DbKind) -> anyhow::Result<Self> {
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        match kind {
            DbKind::Sqlite => {
                let dir = tempfile::tempdir().context("create sqlite temp dir")?;
                let url = format!("sqlite:{}", dir.path().join(format!("{name}.db")).display());
                Ok(Self { url, kind, name, admin: String::new(), _dir: Some(dir) })
            }
            DbKind::Postgres => Self::create_on(&admin_url()).await,
        }
    }

    /// Creates an empty PostgreSQL database on the server whose admin URL is
    /// `admin` (a private server: [`crate::PrivatePostgres::admin_url`]); the
    /// URL's query (`?sslmode=verify-full&sslrootcert=…`) carries over.
    pub async fn create_on(admin: &str) -> anyhow::Result<Self> {
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .with_context(|| format!("connect to PostgreSQL at {admin} to create a test database"))?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .context("create test database")?;
        let (path, query) = admin.split_once('?').unwrap_or((admin, ""));
        let base = path.rsplit_once('/').map(|(base, _)| base).unwrap_or(path);
        let query = if query.is_empty() { String::new() } else { format!("?{query}") };
        let url = format!("{base}/{name}{query}");
        Ok(Self { url, kind: DbKind::Postgres, name, admin: admin.to_owned(), _dir: None })
    }

    /// Which engine.
    pub fn kind(&self) -> DbKind {
        self.kind
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.kind != DbKind::Postgres {
            return;
        }
        let name = self.name.clone();
        let admin = self.admin.clone();
        // Dropping needs async I/O; do it on a helper thread so it works from
        // inside or outside a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                        .await;
                }
            });
        })
        .join();
    }
}
