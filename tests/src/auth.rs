//! Starting the auth service in-process for tests.
//!
//! [`spawn_auth`] builds `sb_auth::App` from a `Config` literal on
//! `127.0.0.1:0` against a [`TestDatabase`] and a nats-server, with a fresh
//! random `JWT_SECRET` and a bootstrap admin, runs it on the test's runtime,
//! and logs the admin in. Dropping the [`AuthHandle`] cancels the service.

use std::net::SocketAddr;

use anyhow::Context as _;
use sb_proto::auth::v1 as pb;
use sb_proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;

use crate::{RunningService, TestDatabase};

/// Email of the bootstrap admin every spawned auth has.
pub const ADMIN_EMAIL: &str = "admin@switchboard.test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-password";

/// A running auth service.
pub struct AuthHandle {
    /// Where its gRPC server listens.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics`, `/healthz`, `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// Its `JWT_SECRET`.
    pub secret: String,
    /// A token of the bootstrap admin.
    pub admin_token: String,
    /// The bootstrap admin's id.
    pub admin_id: String,
    /// The NATS server it publishes to.
    pub nats_url: String,
    /// The `DATABASE_URL` it stores into.
    pub database_url: String,
    service: RunningService<sb_auth::StartError>,
}

/// The config [`spawn_auth`] uses: loopback port-0 listeners, the given
/// secret, the bootstrap admin, a 1 h token TTL.
pub fn auth_config(database_url: &str, nats_url: &str, secret: Option<&str>) -> sb_auth::Config {
    sb_auth::Config {
        grpc_addr: "127.0.0.1:0".parse().expect("literal address"),
        metrics_addr: "127.0.0.1:0".parse().expect("literal address"),
        jwt_secret: secret.map(sb_config::Secret::from),
        jwt_secret_previous: None,
        dev: false,
        token_ttl: std::time::Duration::from_secs(3600),
        jwt_clock_skew: std::time::Duration::from_secs(5),
        login_max_failures: 10,
        login_failure_window: std::time::Duration::from_secs(300),
        stream_replicas: 1,
        shutdown_timeout: std::time::Duration::from_secs(10),
        bootstrap_admin_email: Some(ADMIN_EMAIL.to_owned()),
        bootstrap_admin_password: Some(sb_config::Secret::from(ADMIN_PASSWORD)),
        database: sb_config::DatabaseArgs::for_url(database_url),
        nats: sb_config::NatsArgs::for_url(nats_url),
        telemetry: sb_config::TelemetryArgs::default(),
    }
}

/// Starts auth against `db` and the nats-server at `nats_url`.
pub async fn spawn_auth(db: &TestDatabase, nats_url: &str) -> anyhow::Result<AuthHandle> {
    let secret = format!("test-secret-{}", uuid::Uuid::now_v7().simple());
    spawn_auth_with(auth_config(&db.url, nats_url, Some(&secret))).await
}

/// Starts auth with `config` (which must have a secret and the bootstrap
/// admin of [`auth_config`]).
pub async fn spawn_auth_with(config: sb_auth::Config) -> anyhow::Result<AuthHandle> {
    sb_telemetry::init_for_tests();
    let secret = config.jwt_secret.as_ref().context("spawn_auth needs a JWT secret")?.expose().to_owned();
    let nats_url = config.nats.url.clone();
    let database_url = config.database.url.clone();
    let app = sb_auth::App::build(config).await.context("build auth")?;
    let grpc_addr = app.grpc_addr();
    let metrics_addr = app.metrics_addr();
    let service = RunningService::spawn("auth", |shutdown| app.run(shutdown));
    let mut handle = AuthHandle {
        grpc_addr,
        metrics_addr,
        secret,
        admin_token: String::new(),
        admin_id: String::new(),
        nats_url,
        database_url,
        service,
    };
    let login = handle
        .grpc()
        .await?
        .login(pb::LoginRequest { email: ADMIN_EMAIL.to_owned(), password: ADMIN_PASSWORD.to_owned() })
        .await
        .context("log the bootstrap admin in")?
        .into_inner();
    handle.admin_token = login.token;
    handle.admin_id = login.user.context("login returns the user")?.id;
    Ok(handle)
}

impl AuthHandle {
    /// Starts the graceful stop without waiting for it.
    pub fn begin_stop(&self) {
        self.service.begin_stop();
    }

    /// `http://127.0.0.1:<port>`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// A connected raw gRPC client.
    pub async fn grpc(&self) -> anyhow::Result<AuthServiceClient<Channel>> {
        AuthServiceClient::connect(self.uri()).await.context("connect to auth")
    }

    /// The shared client library, without a verify cache.
    pub fn client(&self) -> sb_authn::AuthClient {
        sb_authn::AuthClient::connect_lazy(&self.grpc_addr.to_string()).expect("loopback address is valid")
    }

    /// `message` with `authorization: Bearer <token>`.
    pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {token}").parse().expect("test tokens are ascii");
        request.metadata_mut().insert("authorization", value);
        request
    }

    /// `message` with the bootstrap admin's token.
    pub fn as_admin<T>(&self, message: T) -> tonic::Request<T> {
        Self::with_token(message, &self.admin_token)
    }

    /// Creates a user (as the admin) and returns it with a fresh token.
    pub async fn create_user(&self, email: &str, role: pb::Role) -> anyhow::Result<(pb::User, String)> {
        let mut grpc = self.grpc().await?;
        let user = grpc
            .create_user(self.as_admin(pb::CreateUserRequest {
                email: email.to_owned(),
                password: "user-password".to_owned(),
                role: role as i32,
                id: String::new(),
            }))
            .await
            .context("create user")?
            .into_inner();
        let token = grpc
            .issue_token(self.as_admin(pb::IssueTokenRequest { user_id: user.id.clone(), ttl_seconds: 0 }))
            .await
            .context("issue token")?
            .into_inner()
            .token;
        Ok((user, token))
    }

    /// Stops the service and waits until it has shut down.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.service.stop().await
    }
}

/// Logs the bootstrap admin ([`ADMIN_EMAIL`]) in to the auth at `auth_addr`
/// (a separate process), seeds users `u1..u<count>` (`u<n>@example.com`)
/// and returns the admin's token.
pub async fn seed_users(auth_addr: &str, count: u32) -> anyhow::Result<String> {
    let mut client = AuthServiceClient::connect(auth_addr.to_owned()).await.context("connect to auth")?;
    let login = client
        .login(pb::LoginRequest { email: ADMIN_EMAIL.to_owned(), password: ADMIN_PASSWORD.to_owned() })
        .await
        .context("log the bootstrap admin in")?
        .into_inner();
    client
        .seed_users(AuthHandle::with_token(
            pb::SeedUsersRequest {
                count,
                id_prefix: "u".to_owned(),
                email_domain: "example.com".to_owned(),
                admin_every: 0,
                password: String::new(),
            },
            &login.token,
        ))
        .await
        .context("seed users")?;
    Ok(login.token)
}
