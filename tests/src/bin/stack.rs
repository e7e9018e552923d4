//! `stack`: the whole Switchboard stack in one process for end-to-end tests
//! and local experiments: a private nats-server, auth, presence, messaging
//! and `--edges N` edges on free loopback ports, against SQLite (default) or
//! PostgreSQL (`TEST_DATABASE_URL`); `--nats-url` uses a nats-server of the
//! caller's instead (to start a stack again on the same streams).
//!
//! It seeds the demo users `admin@example.com` (admin), `alice@example.com`
//! and `bob@example.com` with password `DEMO_PASSWORD` (default
//! `switchboard`), optionally the load-test users `u1..uN` of the bench's
//! loadgen, prints **one JSON line** to stdout, and runs until stdin closes
//! or it gets SIGTERM / ctrl-c. Logs go to stderr (`RUST_LOG`, default `warn`).
//!
//! While it runs, each JSON line on stdin is a command, answered by one JSON
//! line on stdout (`{"error": "..."}` when it failed):
//!
//! | command | answer |
//! |---|---|
//! | `{"cmd":"create_user","email":"…","role":"user"\|"admin"}` | `{"id","email","token"}` |
//! | `{"cmd":"revoke","user_id":"…"}` | `{"ok":true}` (RevokeTokens) |
//! | `{"cmd":"disable","user_id":"…"}` | `{"ok":true}` (DisableUser) |
//! | `{"cmd":"notify","user_id":"…"?,"title":"…"?,"message":"…"}` | `{"id"}` (messaging's Notify) |
//! | `{"cmd":"kick","user_id":"…","reason":"…"?}` | `{"sockets","edges"}` (EdgeControl.Kick) |
//! | `{"cmd":"drain","edge_id":"…","over":"5s"?}` | `{"edge_id","sockets","over_ms"}` (EdgeControl.Drain) |
//! | `{"cmd":"list_edges"}` | `{"edges":[{id,address,version,sockets,users,draining,last_heartbeat_ms}]}` |
//! | `{"cmd":"get_user","user_id":"…"}` | `{"online","sessions":[{edge_id,socket_id,transport,rooms}]}` (PresenceService.GetUser) |
//! | `{"cmd":"grpc_status","call":"kick"\|"drain",…}` | `{"code","message"}` of a call expected to fail |
//!
//! ```text
//! {"edges":["http://127.0.0.1:40001"],"auth":"http://127.0.0.1:40002","nats":"nats://127.0.0.1:40003",
//!  "db":"sqlite","jwtSecret":"...","password":"switchboard",
//!  "users":{"admin":{"id":"...","email":"admin@example.com","token":"..."},"alice":{...},"bob":{...}},
//!  "tokens":{"admin":"...","alice":"...","bob":"..."}}
//! ```

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use sb_proto::auth::v1 as pb;
use sb_tests::DbKind;
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::json;
use std::io::BufRead as _;

/// Command line of `stack`.
#[derive(Debug, clap::Parser)]
#[command(name = "stack", about = "Run nats-server, auth, presence, messaging and N edges in one process")]
struct Args {
    /// How many edges.
    #[arg(long, default_value_t = 1)]
    edges: usize,
    /// `sqlite` or `postgres` (a fresh database on the server at TEST_DATABASE_URL).
    #[arg(long, default_value = "sqlite")]
    db: String,
    /// Auth's JWT secret (random when not given). The bench's loadgen mints with `dev-secret`.
    #[arg(long, env = "JWT_SECRET")]
    jwt_secret: Option<String>,
    /// Password of the demo users.
    #[arg(long, env = "DEMO_PASSWORD", default_value = "switchboard")]
    demo_password: String,
    /// Also create the loadgen's users `u1..uN` (`u<i>@example.com`, every 1000th an admin).
    #[arg(long, default_value_t = 0)]
    seed_load_users: u32,
    /// Per-socket event rate of the edges (0 turns limiting off).
    #[arg(long)]
    rate_limit_per_sec: Option<f64>,
    /// Per-socket burst of the edges.
    #[arg(long)]
    rate_limit_burst: Option<u32>,
    /// Events one socket may have waiting.
    #[arg(long)]
    event_queue_limit: Option<usize>,
    /// Longest message in bytes.
    #[arg(long)]
    message_max_bytes: Option<usize>,
    /// Presence frames per second each edge writes at most (0: unbounded).
    #[arg(long)]
    presence_frames_per_sec: Option<u64>,
    /// Presence scope: `all`, `rooms` or `none`.
    #[arg(long)]
    presence_scope: Option<String>,
    /// Use this nats-server (JetStream enabled) instead of starting a private
    /// one: a stack stopped and started again with the same URL (or a server
    /// restarted on the same store) finds the streams as it left them.
    #[arg(long)]
    nats_url: Option<String>,
    /// The edges' DRAIN_DURATION (default 0s here: stops close everything at once).
    #[arg(long, value_parser = sb_config::parse_duration)]
    drain_duration: Option<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging();
    let db = match args.db.as_str() {
        "sqlite" => DbKind::Sqlite,
        "postgres" | "postgresql" => DbKind::Postgres,
        other => anyhow::bail!("--db must be sqlite or postgres, not {other:?}"),
    };
    let drain_duration = args.drain_duration;
    let (rate, burst, queue, max_bytes, presence_frames) = (
        args.rate_limit_per_sec,
        args.rate_limit_burst,
        args.event_queue_limit,
        args.message_max_bytes,
        args.presence_frames_per_sec,
    );
    let mut options = StackOptions::new(db).edges_with(move |config| {
        config.listen_addr = "127.0.0.1:0".parse().expect("literal address");
        if let Some(rate) = rate {
            config.rate_limit_per_sec = rate;
        }
        if let Some(burst) = burst {
            config.rate_limit_burst = burst;
        }
        if let Some(queue) = queue {
            config.event_queue_limit = queue;
        }
        if let Some(max_bytes) = max_bytes {
            config.message_max_bytes = max_bytes;
        }
        if let Some(frames) = presence_frames {
            config.presence_frames_per_sec = frames;
        }
        if let Some(drain) = drain_duration {
            config.drain_duration = drain;
            config.shutdown_timeout = config.shutdown_timeout.max(drain + Duration::from_secs(10));
        }
    });
    options.edges = args.edges.max(1);
    options.jwt_secret = args.jwt_secret.clone();
    options.nats = args.nats_url.clone().map(sb_config::NatsArgs::for_url);
    if let Some(scope) = args.presence_scope.clone() {
        use clap::ValueEnum as _;
        let scope = sb_presence::state::Scope::from_str(&scope, true)
            .map_err(|_| anyhow::anyhow!("--presence-scope must be all, rooms or none"))?;
        options.presence_settings = std::sync::Arc::new(move |config| config.scope = scope);
    }

    let stack = TestStack::start_with(options).await.context("start the stack")?;
    let mut users = serde_json::Map::new();
    let mut tokens = serde_json::Map::new();
    for (name, role) in [("admin", pb::Role::Admin), ("alice", pb::Role::User), ("bob", pb::Role::User)] {
        let (id, token) = demo_user(&stack, &format!("{name}@example.com"), &args.demo_password, role).await?;
        users.insert(name.to_owned(), json!({ "id": id, "email": format!("{name}@example.com"), "token": token }));
        tokens.insert(name.to_owned(), json!(token));
    }
    if args.seed_load_users > 0 {
        let mut grpc = stack.auth.grpc().await?;
        grpc.seed_users(stack.auth.as_admin(pb::SeedUsersRequest {
            count: args.seed_load_users,
            id_prefix: "u".to_owned(),
            email_domain: "example.com".to_owned(),
            admin_every: 1000,
            password: String::new(),
        }))
        .await
        .context("seed the load-test users")?;
    }
    let line = json!({
        "edges": stack.edges.iter().map(|edge| edge.url.clone()).collect::<Vec<_>>(),
        "edgeIds": stack.edges.iter().map(|edge| edge.edge_id.clone()).collect::<Vec<_>>(),
        "auth": stack.auth.uri(),
        "nats": stack.nats_url(),
        "db": args.db,
        "jwtSecret": stack.auth.secret,
        "password": args.demo_password,
        "users": users,
        "tokens": tokens,
    });
    println!("{line}");

    // Commands arrive on stdin. Read it on a plain thread, not with tokio's
    // stdin: a blocked tokio stdin read would keep the runtime from shutting down.
    let (line_sender, mut line_receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line_sender.send(line).is_err() {
                break;
            }
        }
    });
    let stdin_closed = async {
        while let Some(line) = line_receiver.recv().await {
            if line.trim().is_empty() {
                continue;
            }
            let answer = match run_command(&stack, &line).await {
                Ok(answer) => answer,
                Err(error) => json!({ "error": format!("{error:#}") }),
            };
            println!("{answer}");
        }
    };
    tokio::select! {
        () = stdin_closed => eprintln!("stdin closed, stopping"),
        () = sb_config::shutdown_signal() => {}
    }
    let result = match tokio::time::timeout(Duration::from_secs(30), stack.stop()).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("the stack did not stop within 30 s")),
    };
    if let Err(error) = &result {
        eprintln!("stopping the stack: {error:#}");
    }
    std::process::exit(if result.is_ok() { 0 } else { 1 });
}

/// Creates a demo user (or finds it) and logs it in.
async fn demo_user(stack: &TestStack, email: &str, password: &str, role: pb::Role) -> anyhow::Result<(String, String)> {
    let mut grpc = stack.auth.grpc().await?;
    let created = grpc
        .create_user(stack.auth.as_admin(pb::CreateUserRequest {
            email: email.to_owned(),
            password: password.to_owned(),
            role: role as i32,
            id: String::new(),
        }))
        .await;
    if let Err(status) = created
        && status.code() != tonic::Code::AlreadyExists
    {
        return Err(anyhow::anyhow!("create {email}: {status}"));
    }
    let login = grpc
        .login(pb::LoginRequest { email: email.to_owned(), password: password.to_owned() })
        .await
        .with_context(|| format!("log {email} in"))?
        .into_inner();
    let id = login.user.map(|user| user.id).unwrap_or_default();
    Ok((id, login.token))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Runs one stdin command (see the module docs).
async fn run_command(stack: &TestStack, line: &str) -> anyhow::Result<serde_json::Value> {
    let command: serde_json::Value = serde_json::from_str(line).context("a command is one JSON object per line")?;
    let field = |name: &str| command[name].as_str().map(str::to_owned);
    let required = |name: &str| field(name).with_context(|| format!("missing string field {name:?}"));
    match command["cmd"].as_str().unwrap_or_default() {
        "create_user" => {
            let role = match field("role").as_deref() {
                None | Some("user") => pb::Role::User,
                Some("admin") => pb::Role::Admin,
                Some(other) => anyhow::bail!("role must be user or admin, not {other:?}"),
            };
            let (user, token) = stack.auth.create_user(&required("email")?, role).await?;
            Ok(json!({ "id": user.id, "email": user.email, "token": token }))
        }
        "revoke" => {
            stack.revoke(&required("user_id")?).await?;
            Ok(json!({ "ok": true }))
        }
        "disable" => {
            stack.disable(&required("user_id")?).await?;
            Ok(json!({ "ok": true }))
        }
        "notify" => {
            use sb_proto::messaging::v1 as mpb;
            let channel = tonic::transport::Endpoint::from_shared(stack.messaging.grpc_url())?.connect().await?;
            let mut client = mpb::messaging_service_client::MessagingServiceClient::new(channel);
            let reply = client
                .notify(stack.auth.as_admin(mpb::NotifyRequest {
                    user_id: field("user_id").unwrap_or_default(),
                    title: field("title").unwrap_or_default(),
                    message: required("message")?,
                    room: field("room").unwrap_or_default(),
                }))
                .await
                .context("notify")?
                .into_inner();
            Ok(json!({ "id": reply.id, "timestamp": reply.timestamp }))
        }
        "kick" | "drain" | "list_edges" | "get_user" | "grpc_status" => edge_control(stack, &command).await,
        other => anyhow::bail!(
            "unknown command {other:?}: use create_user, revoke, disable, notify, kick, drain, list_edges, get_user or grpc_status"
        ),
    }
}

/// The admin calls on presence's gRPC server (EdgeControl, GetUser).
async fn edge_control(stack: &TestStack, command: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    use sb_proto::edge::v1 as epb;
    use sb_proto::presence::v1 as ppb;
    let text = |name: &str| command[name].as_str().unwrap_or_default().to_owned();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", stack.presence.grpc_addr))?.connect().await?;
    let mut control = epb::edge_control_client::EdgeControlClient::new(channel.clone());
    let kick = epb::KickRequest { user_id: text("user_id"), reason: text("reason") };
    let drain = epb::DrainRequest { edge_id: text("edge_id"), over: text("over") };
    match command["cmd"].as_str().unwrap_or_default() {
        "kick" => {
            let done = control.kick(stack.auth.as_admin(kick)).await.context("kick")?.into_inner();
            Ok(json!({ "sockets": done.sockets, "edges": done.edges }))
        }
        "drain" => {
            let done = control.drain(stack.auth.as_admin(drain)).await.context("drain")?.into_inner();
            Ok(json!({ "edge_id": done.edge_id, "sockets": done.sockets, "over_ms": done.over_ms }))
        }
        "list_edges" => {
            let edges = control.list_edges(stack.auth.as_admin(epb::ListEdgesRequest {})).await?.into_inner().edges;
            let edges: Vec<_> = edges
                .into_iter()
                .map(|e| {
                    json!({ "id": e.id, "address": e.address, "version": e.version, "sockets": e.sockets,
                            "users": e.users, "draining": e.draining, "last_heartbeat_ms": e.last_heartbeat_ms })
                })
                .collect();
            Ok(json!({ "edges": edges }))
        }
        "get_user" => {
            let mut presence = ppb::presence_service_client::PresenceServiceClient::new(channel);
            let user =
                presence.get_user(stack.auth.as_admin(ppb::GetUserRequest { id: text("user_id") })).await?.into_inner();
            let sessions: Vec<_> = user
                .sessions
                .into_iter()
                .map(|s| json!({ "edge_id": s.edge_id, "socket_id": s.socket_id, "transport": s.transport, "rooms": s.rooms }))
                .collect();
            Ok(json!({ "online": user.online, "sessions": sessions }))
        }
        _ => {
            let result = match command["call"].as_str().unwrap_or_default() {
                "kick" => control.kick(stack.auth.as_admin(kick)).await.map(|_| ()),
                "drain" => control.drain(stack.auth.as_admin(drain)).await.map(|_| ()),
                other => anyhow::bail!("grpc_status call must be kick or drain, not {other:?}"),
            };
            match result {
                Ok(()) => Ok(json!({ "code": "OK", "message": "" })),
                Err(status) => Ok(json!({ "code": format!("{:?}", status.code()), "message": status.message() })),
            }
        }
    }
}
