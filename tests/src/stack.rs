//! The whole stack in-process: a private nats-server (or the caller's,
//! [`StackOptions::nats_url`]), auth, one presence replica, messaging, and N
//! edges, each on a free loopback port, against PostgreSQL or SQLite. Tests get users with tokens from it; the `stack`
//! binary runs it for the end-to-end suite.

use std::sync::Arc;

use anyhow::Context as _;
use sb_proto::auth::v1 as pb;

use crate::auth::{AuthHandle, auth_config, spawn_auth_with};
use crate::edge::{EdgeHandle, edge_config, spawn_edge};
use crate::messaging::{RunningMessaging, messaging_config, spawn_messaging};
use crate::presence::{PresenceReplica, replica_config};
use crate::{DbKind, NatsServer, TestDatabase};

/// How to start a [`TestStack`].
#[derive(Clone)]
pub struct StackOptions {
    /// Where auth and messaging store.
    pub db: DbKind,
    /// How many edges.
    pub edges: usize,
    /// Applied to every edge's settings before it starts (after the
    /// addresses are filled in).
    pub edge_settings: Arc<dyn Fn(&mut sb_edge::Config) + Send + Sync>,
    /// Applied to the presence replica's settings.
    pub presence_settings: Arc<dyn Fn(&mut sb_presence::Config) + Send + Sync>,
    /// Auth's `JWT_SECRET`; random when `None`.
    pub jwt_secret: Option<String>,
    /// Connect every service to this NATS (URLs, credentials, TLS, subject
    /// prefix) instead of starting a private nats-server.
    pub nats: Option<sb_config::NatsArgs>,
    /// Create auth's and messaging's PostgreSQL databases on the server with
    /// this admin URL (its query, e.g. `?sslmode=verify-full&sslrootcert=…`,
    /// carries over) instead of `db`'s default server.
    pub postgres_admin_url: Option<String>,
}

impl StackOptions {
    /// One edge with default settings on `db`.
    pub fn new(db: DbKind) -> Self {
        Self {
            db,
            edges: 1,
            edge_settings: Arc::new(|_| {}),
            presence_settings: Arc::new(|_| {}),
            jwt_secret: None,
            nats: None,
            postgres_admin_url: None,
        }
    }

    /// Sets how every edge is configured.
    pub fn edges_with(mut self, settings: impl Fn(&mut sb_edge::Config) + Send + Sync + 'static) -> Self {
        self.edge_settings = Arc::new(settings);
        self
    }
}

/// A user of the stack with a token.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Its id.
    pub id: String,
    /// Its email.
    pub email: String,
    /// A valid access token.
    pub token: String,
}

/// Everything running. Dropping it stops the services.
pub struct TestStack {
    /// The edges, in start order.
    pub edges: Vec<EdgeHandle>,
    /// Messaging.
    pub messaging: RunningMessaging,
    /// The presence replica.
    pub presence: PresenceReplica,
    /// Auth.
    pub auth: AuthHandle,
    nats: Option<NatsServer>,
    nats_args: sb_config::NatsArgs,
    _auth_db: TestDatabase,
    _messaging_db: TestDatabase,
}

impl TestStack {
    /// One edge, `db` storage.
    pub async fn start(db: DbKind) -> anyhow::Result<Self> {
        Self::start_with(StackOptions::new(db)).await
    }

    /// Starts everything as `options` says; returns once every part serves.
    pub async fn start_with(options: StackOptions) -> anyhow::Result<Self> {
        let (nats, nats_args) = match options.nats.clone() {
            Some(args) => (None, args),
            None => {
                let server = NatsServer::start().await.context("start nats-server")?;
                let args = sb_config::NatsArgs::for_url(server.url());
                (Some(server), args)
            }
        };
        let database = async || match &options.postgres_admin_url {
            Some(admin) => TestDatabase::create_on(admin).await,
            None => TestDatabase::create(options.db).await,
        };
        let auth_db = database().await.context("create the auth database")?;
        let messaging_db = database().await.context("create the messaging database")?;
        let secret =
            options.jwt_secret.clone().unwrap_or_else(|| format!("test-secret-{}", uuid::Uuid::now_v7().simple()));
        let mut auth_settings = auth_config(&auth_db.url, &nats_args.url, Some(&secret));
        auth_settings.nats = nats_args.clone();
        let auth = spawn_auth_with(auth_settings).await.context("start auth")?;
        let mut presence_config = replica_config(&nats_args.url, &auth.uri());
        presence_config.nats = nats_args.clone();
        (options.presence_settings)(&mut presence_config);
        let presence = PresenceReplica::start(presence_config).await.context("start presence")?;
        let mut messaging_settings = messaging_config(&nats_args.url, &messaging_db.url);
        messaging_settings.nats = nats_args.clone();
        messaging_settings.auth_addr = auth.uri();
        let messaging = spawn_messaging(messaging_settings).await.context("start messaging")?;
        let mut edges = Vec::with_capacity(options.edges);
        for _ in 0..options.edges.max(1) {
            let mut config = edge_config(&nats_args.url, &auth.uri());
            config.nats = nats_args.clone();
            (options.edge_settings)(&mut config);
            edges.push(spawn_edge(config).await.context("start an edge")?);
        }
        Ok(Self { edges, messaging, presence, auth, nats, nats_args, _auth_db: auth_db, _messaging_db: messaging_db })
    }

    /// Kills the private nats-server (SIGKILL), keeping its store for
    /// [`Self::restart_nats`]; does nothing with [`StackOptions::nats`].
    pub fn kill_nats(&mut self) {
        if let Some(nats) = self.nats.as_mut() {
            nats.kill();
        }
    }

    /// Starts the private nats-server again on the same port and store.
    pub async fn restart_nats(&mut self) -> anyhow::Result<()> {
        if let Some(nats) = self.nats.take() {
            self.nats = Some(nats.restart().await?);
        }
        Ok(())
    }

    /// The NATS URL.
    pub fn nats_url(&self) -> &str {
        self.nats.as_ref().map_or(&self.nats_args.url, NatsServer::url)
    }

    /// The NATS settings every service of the stack uses.
    pub fn nats_args(&self) -> &sb_config::NatsArgs {
        &self.nats_args
    }

    /// The first edge's URL.
    pub fn url(&self) -> &str {
        &self.edges[0].url
    }

    /// Creates a user `name@example.com` (a plain user) with a token.
    pub async fn user(&self, name: &str) -> anyhow::Result<TestUser> {
        self.create(name, pb::Role::User).await
    }

    /// Creates an admin `name@example.com` with a token.
    pub async fn admin(&self, name: &str) -> anyhow::Result<TestUser> {
        self.create(name, pb::Role::Admin).await
    }

    async fn create(&self, name: &str, role: pb::Role) -> anyhow::Result<TestUser> {
        let (user, token) = self.auth.create_user(&format!("{name}@example.com"), role).await?;
        Ok(TestUser { id: user.id, email: user.email, token })
    }

    /// Revokes every token of `user_id` (as the admin).
    pub async fn revoke(&self, user_id: &str) -> anyhow::Result<()> {
        self.auth
            .grpc()
            .await?
            .revoke_tokens(self.auth.as_admin(pb::RevokeTokensRequest { user_id: user_id.to_owned() }))
            .await
            .context("revoke tokens")?;
        Ok(())
    }

    /// Disables `user_id` (as the admin).
    pub async fn disable(&self, user_id: &str) -> anyhow::Result<()> {
        self.auth
            .grpc()
            .await?
            .disable_user(self.auth.as_admin(pb::DisableUserRequest { id: user_id.to_owned(), disabled: true }))
            .await
            .context("disable user")?;
        Ok(())
    }

    /// Stops the edges, then the services, gracefully.
    pub async fn stop(self) -> anyhow::Result<()> {
        for edge in self.edges {
            edge.stop().await?;
        }
        self.messaging.stop().await?;
        self.presence.stop().await;
        self.auth.stop().await?;
        Ok(())
    }
}
