//! `cluster`: Switchboard as a cluster of real processes on loopback, for
//! `make test-cluster` (driven by `tests/e2e/cluster/run.js`): a 3-node
//! nats-server cluster with JetStream, a private PostgreSQL, one auth, `--presence`
//! presence and `--messaging` messaging replicas and `--edges` edges (the
//! `sb-*` binaries from `--bin-dir`), every stream with `JETSTREAM_REPLICAS=3`,
//! and a TCP balancer with one front per edge that falls over to a live edge.
//!
//! It seeds users `u1..uN`, prints **one JSON line** (`edges`, `fronts`,
//! `jwtSecret`, `users`), then answers one JSON command per stdin line with
//! one JSON line (`{"error": "…"}` when it failed), until stdin closes:
//!
//! | command | effect → answer |
//! |---|---|
//! | `{"cmd":"kill","target":"nats-leader"}` | SIGKILL of the node leading the ingest stream → `{"killed":"n1"}` |
//! | `{"cmd":"kill","target":"nats-follower"}` | SIGKILL of a node that does not lead it |
//! | `{"cmd":"kill","target":"messaging"\|"presence"\|"edge","index":i}` | SIGKILL of that process |
//! | `{"cmd":"drain","target":"edge","index":i}` | SIGTERM of that edge: it drains its sockets over `DRAIN_DURATION` ([`EDGE_DRAIN`]) and exits; `heal` starts it again |
//! | `{"cmd":"heal"}` | starts again whatever was killed (as a supervisor would) and waits until it is ready → `{"restarted":[…]}` |
//! | `{"cmd":"pg_stop"}`, `{"cmd":"pg_start"}` | PostgreSQL stopped at once (`-m immediate`) / started again |
//! | `{"cmd":"stored","ids":[…]}` | `{"stored":n,"missing":[…]}` from messaging's database |
//! | `{"cmd":"presence_stats"}` | each live presence replica's `Stats`: `{"replicas":[{"replica","users","sockets","edges"}]}` |
//! | `{"cmd":"stream"}` | the ingest stream: `{"leader","messages","replicas"}` |

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser as _;
use sb_tests::cluster::{Balancer, NatsCluster, ServiceProcess, free_port, wait_ready};
use sb_tests::{PrivatePostgres, TestDatabase};
use serde_json::{Value, json};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The edges' `DRAIN_DURATION`: a drained edge closes its sockets over this long.
const EDGE_DRAIN: &str = "5s";

/// Command line of `cluster`.
#[derive(Debug, clap::Parser)]
#[command(name = "cluster", about = "Run Switchboard as real processes on a 3-node NATS cluster")]
struct Args {
    /// Where the `sb-edge`, `sb-auth`, `sb-presence` and `sb-messaging` binaries are.
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// nats-server nodes.
    #[arg(long, default_value_t = 3)]
    nats_nodes: usize,
    /// Edges.
    #[arg(long, default_value_t = 3)]
    edges: usize,
    /// Messaging replicas.
    #[arg(long, default_value_t = 2)]
    messaging: usize,
    /// Presence replicas.
    #[arg(long, default_value_t = 2)]
    presence: usize,
    /// Users `u1..uN` to seed.
    #[arg(long, default_value_t = 300)]
    users: u32,
}

/// One service process and where it says it is ready.
struct Service {
    process: ServiceProcess,
    ready: SocketAddr,
    /// The gRPC address (presence: for `Stats`).
    grpc: Option<SocketAddr>,
    killed: bool,
}

impl Service {
    fn start(
        name: &str,
        bin: PathBuf,
        env: Vec<(&str, String)>,
        ready: SocketAddr,
        logs: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Ok(Self { process: ServiceProcess::start(name, &bin, env, logs)?, ready, grpc: None, killed: false })
    }

    /// Waits until it is ready. A process that exits meanwhile is started
    /// again, as a supervisor (Kubernetes) would: on a busy machine, creating
    /// the R3 streams and consumers of a fresh cluster can time out once.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut restarts = 0;
        loop {
            if wait_ready(self.ready, Duration::from_millis(500)).await.is_ok() {
                return Ok(());
            }
            if self.process.exited() && restarts < 5 {
                restarts += 1;
                eprintln!(
                    "cluster: {} exited while starting, starting it again:\n{}",
                    self.process.name,
                    self.process.log_tail()
                );
                self.process.restart()?;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} is not ready within {READY_TIMEOUT:?}\n{}", self.process.name, self.process.log_tail());
            }
        }
    }
}

struct Cluster {
    admin_token: String,
    nats: NatsCluster,
    nats_killed: Vec<usize>,
    postgres: PrivatePostgres,
    messaging_db: TestDatabase,
    auth: Service,
    presence: Vec<Service>,
    messaging: Vec<Service>,
    edges: Vec<Service>,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::Builder::new().prefix("sb-cluster-").tempdir().context("create the cluster dir")?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    eprintln!("cluster: logs in {}", logs.display());
    let bin = |name: &str| args.bin_dir.join(name);
    for name in ["sb-auth", "sb-presence", "sb-messaging", "sb-edge"] {
        anyhow::ensure!(bin(name).is_file(), "{} is missing: cargo build -p {name}", bin(name).display());
    }

    let nats = NatsCluster::start(dir.path(), args.nats_nodes).await.context("start the nats cluster")?;
    let nats_url = nats.urls();
    let postgres = PrivatePostgres::start(None).await.context("start PostgreSQL")?;
    let auth_db = TestDatabase::create_on(&postgres.admin_url("")).await?;
    let messaging_db = TestDatabase::create_on(&postgres.admin_url("")).await?;
    let secret = format!("cluster-secret-{}", uuid::Uuid::now_v7().simple());
    let replicas = args.nats_nodes.min(3).to_string();

    let (auth_grpc, auth_metrics) = (free_port()?, free_port()?);
    let auth_addr = format!("http://127.0.0.1:{auth_grpc}");
    let mut auth = Service::start(
        "auth",
        bin("sb-auth"),
        vec![
            ("GRPC_ADDR", addr(auth_grpc).to_string()),
            ("METRICS_ADDR", addr(auth_metrics).to_string()),
            ("JWT_SECRET", secret.clone()),
            ("DATABASE_URL", auth_db.url.clone()),
            ("NATS_URL", nats_url.clone()),
            ("BOOTSTRAP_ADMIN_EMAIL", sb_tests::auth::ADMIN_EMAIL.to_owned()),
            ("BOOTSTRAP_ADMIN_PASSWORD", sb_tests::auth::ADMIN_PASSWORD.to_owned()),
        ],
        addr(auth_metrics),
        &logs,
    )?;
    auth.wait_ready().await?;
    let admin_token = sb_tests::auth::seed_users(&auth_addr, args.users).await?;

    let mut presence = Vec::new();
    for index in 0..args.presence {
        let (grpc, metrics) = (free_port()?, free_port()?);
        let mut replica = Service::start(
            &format!("presence-{index}"),
            bin("sb-presence"),
            vec![
                ("GRPC_ADDR", addr(grpc).to_string()),
                ("METRICS_ADDR", addr(metrics).to_string()),
                ("AUTH_ADDR", auth_addr.clone()),
                ("NATS_URL", nats_url.clone()),
                ("JETSTREAM_REPLICAS", replicas.clone()),
                ("PRESENCE_REPLICA_ID", format!("presence-{index}")),
            ],
            addr(metrics),
            &logs,
        )?;
        replica.grpc = Some(addr(grpc));
        presence.push(replica);
    }
    for service in &mut presence {
        service.wait_ready().await?;
    }
    let mut messaging = Vec::new();
    for index in 0..args.messaging {
        let (grpc, metrics) = (free_port()?, free_port()?);
        messaging.push(Service::start(
            &format!("messaging-{index}"),
            bin("sb-messaging"),
            vec![
                ("GRPC_ADDR", addr(grpc).to_string()),
                ("METRICS_ADDR", addr(metrics).to_string()),
                ("AUTH_ADDR", auth_addr.clone()),
                ("NATS_URL", nats_url.clone()),
                ("DATABASE_URL", messaging_db.url.clone()),
                ("JETSTREAM_REPLICAS", replicas.clone()),
            ],
            addr(metrics),
            &logs,
        )?);
    }
    for service in &mut messaging {
        service.wait_ready().await?;
    }
    let mut edges = Vec::new();
    for index in 0..args.edges {
        let port = free_port()?;
        edges.push(Service::start(
            &format!("edge-{index}"),
            bin("sb-edge"),
            vec![
                ("LISTEN_ADDR", addr(port).to_string()),
                ("EDGE_ID", format!("edge-{index}")),
                ("AUTH_ADDR", auth_addr.clone()),
                ("NATS_URL", nats_url.clone()),
                ("JETSTREAM_REPLICAS", replicas.clone()),
                ("DRAIN_DURATION", EDGE_DRAIN.to_owned()),
                ("SHUTDOWN_TIMEOUT", "20s".to_owned()),
            ],
            addr(port),
            &logs,
        )?);
    }
    for service in &mut edges {
        service.wait_ready().await?;
    }
    let balancer = Balancer::start(edges.iter().map(|edge| edge.ready).collect()).await?;

    let mut cluster = Cluster {
        admin_token,
        nats,
        nats_killed: Vec::new(),
        postgres,
        messaging_db,
        auth,
        presence,
        messaging,
        edges,
    };
    let line = json!({
        "edges": cluster.edges.iter().map(|edge| format!("http://{}", edge.ready)).collect::<Vec<_>>(),
        "fronts": balancer.fronts.iter().map(|front| format!("http://{front}")).collect::<Vec<_>>(),
        "nats": nats_url,
        "jwtSecret": secret,
        "users": args.users,
        "logs": logs.display().to_string(),
    });
    println!("{line}");

    let (line_sender, mut line_receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line_sender.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = line_receiver.recv().await {
        if line.trim().is_empty() {
            continue;
        }
        let answer = match run_command(&mut cluster, &line).await {
            Ok(answer) => answer,
            Err(error) => json!({ "error": format!("{error:#}") }),
        };
        println!("{answer}");
    }
    drop(balancer);
    drop(cluster);
    if std::env::var_os("CLUSTER_KEEP").is_some() {
        eprintln!("cluster: keeping {}", dir.keep().display());
    }
    Ok(())
}

/// Seeds `u1..uN` (`u<i>@example.com`) as the bootstrap admin; returns the admin's token.
async fn run_command(cluster: &mut Cluster, line: &str) -> anyhow::Result<Value> {
    let command: Value = serde_json::from_str(line).context("a command is one JSON object per line")?;
    let index = command["index"].as_u64().unwrap_or(0) as usize;
    match (command["cmd"].as_str().unwrap_or_default(), command["target"].as_str().unwrap_or_default()) {
        ("kill", "nats-leader" | "nats-follower") => {
            let leader = ingest_leader(&cluster.nats).await?;
            let leader_index = cluster.nats.index_of(&leader).context("the leader is one of our nodes")?;
            let victim = if command["target"] == "nats-leader" {
                leader_index
            } else {
                (0..cluster.nats.len())
                    .find(|i| *i != leader_index && !cluster.nats_killed.contains(i))
                    .context("a follower")?
            };
            cluster.nats.kill(victim);
            cluster.nats_killed.push(victim);
            Ok(json!({ "killed": cluster.nats.name(victim), "leader": leader }))
        }
        ("kill", target @ ("messaging" | "presence" | "edge")) => {
            let services = match target {
                "messaging" => &mut cluster.messaging,
                "presence" => &mut cluster.presence,
                _ => &mut cluster.edges,
            };
            let service = services.get_mut(index).context("no such replica")?;
            service.process.kill();
            service.killed = true;
            Ok(json!({ "killed": service.process.name }))
        }
        ("drain", "edge") => {
            let service = cluster.edges.get_mut(index).context("no such edge")?;
            service.process.terminate()?;
            service.killed = true;
            Ok(json!({ "draining": service.process.name, "over": EDGE_DRAIN }))
        }
        ("heal", _) => {
            let mut restarted = Vec::new();
            for node in std::mem::take(&mut cluster.nats_killed) {
                cluster.nats.restart(node)?;
                restarted.push(cluster.nats.name(node).to_owned());
            }
            if !restarted.is_empty() {
                cluster.nats.wait_for_jetstream().await?;
            }
            for service in cluster
                .presence
                .iter_mut()
                .chain(cluster.messaging.iter_mut())
                .chain(cluster.edges.iter_mut())
                .chain(std::iter::once(&mut cluster.auth))
            {
                if service.killed || service.process.exited() {
                    // A drained edge exits by itself; a killed process has already.
                    if !service.process.wait_exit(Duration::from_secs(30)).await {
                        eprintln!("{} did not exit within 30 s of its stop; killing it", service.process.name);
                    }
                    service.process.restart()?;
                    service.wait_ready().await?;
                    service.killed = false;
                    restarted.push(service.process.name.clone());
                }
            }
            Ok(json!({ "restarted": restarted }))
        }
        ("pg_stop", _) => {
            cluster.postgres.stop().await?;
            Ok(json!({ "ok": true }))
        }
        ("pg_start", _) => {
            cluster.postgres.restart().await?;
            Ok(json!({ "ok": true }))
        }
        ("stored", _) => {
            let ids: Vec<String> = serde_json::from_value(command["ids"].clone()).context("ids: a list of strings")?;
            stored(&cluster.messaging_db.url, &ids).await
        }
        ("presence_stats", _) => {
            let mut replicas = Vec::new();
            for replica in cluster.presence.iter().filter(|replica| !replica.killed) {
                let grpc = replica.grpc.context("presence has a gRPC address")?;
                let mut client = sb_proto::presence::v1::presence_service_client::PresenceServiceClient::connect(
                    format!("http://{grpc}"),
                )
                .await?;
                let stats = client
                    .stats(sb_tests::auth::AuthHandle::with_token(
                        sb_proto::presence::v1::StatsRequest {},
                        &cluster.admin_token,
                    ))
                    .await?
                    .into_inner();
                let edges: Vec<Value> =
                    stats.edges.iter().map(|edge| json!({ "edge": edge.edge_id, "sockets": edge.sockets })).collect();
                replicas.push(json!({
                    "replica": replica.process.name,
                    "users": stats.users,
                    "sockets": stats.sockets,
                    "edges": edges,
                }));
            }
            Ok(json!({ "replicas": replicas }))
        }
        ("stream", _) => {
            let client = async_nats::connect(cluster.nats.client_urls()).await?;
            let mut stream = async_nats::jetstream::new(client).get_stream("SB_MSG").await?;
            let info = stream.info().await?;
            Ok(json!({
                "leader": info.cluster.as_ref().and_then(|c| c.leader.clone()),
                "messages": info.state.messages,
                "replicas": info.config.num_replicas,
            }))
        }
        (other, _) => bail!("unknown command {other:?}"),
    }
}

/// The server name leading the ingest stream.
async fn ingest_leader(nats: &NatsCluster) -> anyhow::Result<String> {
    let client = async_nats::connect(nats.client_urls()).await?;
    let mut stream = async_nats::jetstream::new(client).get_stream("SB_MSG").await?;
    let info = stream.info().await?;
    info.cluster.as_ref().and_then(|cluster| cluster.leader.clone()).context("the ingest stream has no leader")
}

/// How many of `ids` messaging has stored.
async fn stored(database_url: &str, ids: &[String]) -> anyhow::Result<Value> {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(database_url).await.context("connect to messaging's database")?;
    let found: Vec<String> = sqlx::query_scalar("SELECT id FROM messages WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(&mut connection)
        .await
        .context("query stored messages")?;
    let found: std::collections::HashSet<String> = found.into_iter().collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !found.contains(*id)).take(20).collect();
    Ok(json!({ "stored": found.len(), "missing": missing }))
}
