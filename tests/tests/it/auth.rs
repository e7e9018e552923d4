//! Auth service tests: every RPC and every token rejection of issue 2, over
//! a real gRPC connection, each against PostgreSQL and SQLite.
//!
//! `both!(name)` turns `async fn name(kind: DbKind)` into the tests
//! `name::postgres` and `name::sqlite`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sb_proto::auth::v1 as pb;
use sb_tests::auth::{AuthHandle, spawn_auth};
use sb_tests::{DbKind, NatsServer, TestDatabase};

mod admin;
mod client;
mod login_lock;
mod restart;
mod service;
mod verify;

/// Runs an `async fn(DbKind)` as one test per database engine.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$name(sb_tests::DbKind::Postgres).await
            }
            #[tokio::test]
            async fn sqlite() {
                super::$name(sb_tests::DbKind::Sqlite).await
            }
        }
    };
}
use both;

/// One test's world: a nats-server, a fresh database, auth on top.
/// Fields drop in order: auth stops before its database goes away.
pub struct Env {
    pub auth: AuthHandle,
    pub db: TestDatabase,
    pub nats: NatsServer,
}

impl Env {
    pub async fn start(kind: DbKind) -> Self {
        let nats = NatsServer::start().await.expect("start nats-server");
        let db = TestDatabase::create(kind).await.expect("create test database");
        let auth = spawn_auth(&db, nats.url()).await.expect("spawn auth");
        Self { auth, db, nats }
    }

    pub async fn grpc(&self) -> pb::auth_service_client::AuthServiceClient<tonic::transport::Channel> {
        self.auth.grpc().await.expect("connect to auth")
    }

    /// VerifyToken over gRPC, with the token exactly as given.
    pub async fn verify(&self, token: &str) -> Result<pb::VerifyTokenResponse, tonic::Status> {
        self.grpc().await.verify_token(pb::VerifyTokenRequest { token: token.to_owned() }).await.map(|r| r.into_inner())
    }

    /// Runs raw SQL on the service's database (e.g. to delete a row behind its back).
    pub async fn execute_sql(&self, sql: &str, id: &str) {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&self.db.url).await.expect("connect to the test database");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(id).execute(&mut connection).await.expect("run sql");
    }
}

/// Asserts `result` failed with `code` and a message containing `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code, needle: &str) {
    match result {
        Ok(value) => panic!("expected {code:?} ({needle}), got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "status: {status:?}");
            assert!(status.message().contains(needle), "message {:?} lacks {needle:?}", status.message());
        }
    }
}

/// Asserts an UNAUTHENTICATED with exactly `reason` as its message.
#[track_caller]
pub fn assert_rejected<T: std::fmt::Debug>(result: Result<T, tonic::Status>, reason: &str) {
    match result {
        Ok(value) => panic!("expected UNAUTHENTICATED {reason:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "status: {status:?}");
            assert_eq!(status.message(), reason);
        }
    }
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

/// The claims auth would put in a token for `user`, valid for an hour.
pub fn claims_of(user: &pb::User) -> serde_json::Value {
    let now = now_s();
    serde_json::json!({
        "sub": user.id,
        "email": user.email,
        "role": if user.role == pb::Role::Admin as i32 { "admin" } else { "user" },
        "tokenVersion": user.token_version,
        "iat": now,
        "exp": now + 3600,
    })
}

fn encode_part(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A JWT with any header and payload, HMAC-SHA256-signed with `secret`
/// whatever the header claims.
pub fn sign_hs256(header: &serde_json::Value, payload: &serde_json::Value, secret: &str) -> String {
    let signing_input = format!("{}.{}", encode_part(header), encode_part(payload));
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
        .expect("hmac signing works");
    format!("{signing_input}.{signature}")
}

/// A JWT with an unsigned header and payload and the given signature part.
pub fn unsigned(header: &serde_json::Value, payload: &serde_json::Value, signature: &str) -> String {
    format!("{}.{}.{signature}", encode_part(header), encode_part(payload))
}

/// Subscribes to `<prefix>.control.access` on the test's nats-server.
pub async fn subscribe_access_changes(env: &Env) -> async_nats::Subscriber {
    let client = async_nats::connect(env.nats.url()).await.expect("connect to nats");
    let subjects = sb_events::Subjects::new("sb").expect("default prefix");
    let subscriber = client.subscribe(subjects.control_access()).await.expect("subscribe");
    sb_tests::round_trip(&client).await.expect("subscription registered");
    subscriber
}

/// The next AccessChanged event, within 5 s.
pub async fn next_access_change(subscriber: &mut async_nats::Subscriber) -> sb_events::control::AccessChanged {
    use futures_util::StreamExt as _;
    let message = tokio::time::timeout(std::time::Duration::from_secs(5), subscriber.next())
        .await
        .expect("an AccessChanged event within 5 s")
        .expect("subscription open");
    serde_json::from_slice(&message.payload).expect("AccessChanged JSON")
}
