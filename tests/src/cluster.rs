//! Pieces for running Switchboard as a cluster of real processes on
//! loopback (`make test-cluster`): a nats-server cluster with JetStream,
//! service processes that can be killed with SIGKILL and started again, and
//! a TCP balancer in front of the edges.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// A free loopback port (bound, then released for a child process to take).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn log_to(path: &Path) -> anyhow::Result<Stdio> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    Ok(Stdio::from(file))
}

/// One node of a [`NatsCluster`].
struct NatsNode {
    name: String,
    client_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

/// `n` nats-servers with JetStream joined in one cluster on loopback, each
/// with its own store directory. Nodes can be killed (SIGKILL) and started
/// again on the same ports and store.
pub struct NatsCluster {
    nodes: Vec<NatsNode>,
    dir: PathBuf,
}

impl NatsCluster {
    /// Starts `n` nodes under `dir` and waits until JetStream answers.
    pub async fn start(dir: &Path, n: usize) -> anyhow::Result<Self> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| Ok((free_port()?, free_port()?))).collect::<anyhow::Result<_>>()?;
        let routes: Vec<String> = ports.iter().map(|(_, route)| format!("nats-route://127.0.0.1:{route}")).collect();
        let mut nodes = Vec::new();
        for (index, (client_port, route_port)) in ports.iter().enumerate() {
            let name = format!("n{index}");
            let store = dir.join(format!("{name}-store"));
            let config = dir.join(format!("{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{client_port}\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{\n  name: sb-test\n  listen: 127.0.0.1:{route_port}\n  routes: [{}]\n}}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )?;
            nodes.push(NatsNode { name, client_port: *client_port, config, child: None });
        }
        let mut cluster = Self { nodes, dir: dir.to_path_buf() };
        for index in 0..n {
            cluster.spawn(index)?;
        }
        cluster.wait_for_jetstream().await?;
        Ok(cluster)
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        let log = self.dir.join(format!("{}.log", node.name));
        let child = Command::new(crate::nats::nats_server_binary())
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(log_to(&log)?)
            .spawn()
            .context("start a nats-server node")?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until a client can use JetStream (a meta leader is elected).
    pub async fn wait_for_jetstream(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Ok(client)) =
                tokio::time::timeout(Duration::from_secs(2), async_nats::connect(self.client_urls())).await
            {
                // `$JS.API.INFO` answers without an error once a meta leader is elected.
                let info =
                    tokio::time::timeout(Duration::from_secs(2), client.request("$JS.API.INFO", "".into())).await;
                if let Ok(Ok(reply)) = info
                    && !String::from_utf8_lossy(&reply.payload).contains("\"error\"")
                {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("n0.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                bail!("the nats cluster has no JetStream leader after 60 s; n0 says:\n{}", tail.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every node's client URL, comma-separated (`NATS_URL`).
    pub fn urls(&self) -> String {
        self.client_urls().join(",")
    }

    /// Every node's client URL (for `async_nats::connect`).
    pub fn client_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| format!("nats://127.0.0.1:{}", node.client_port)).collect()
    }

    /// The node called `name` (`n0`…).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node's name.
    pub fn name(&self, index: usize) -> &str {
        &self.nodes[index].name
    }

    /// SIGKILL of node `index` (its store stays).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `index` again on its ports and store.
    pub fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.kill(index);
        self.spawn(index)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}

/// Where `make test` put the debug build of binary `name` (`sb-edge`, …):
/// `$CARGO_TARGET_DIR/debug`, else the workspace's `target/debug`; with
/// `SB_BIN_DIR` set, that directory instead (e.g. `target/release`, to
/// measure a release build). Panics with what to run when it is missing.
pub fn built_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("SB_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
        target.join("debug")
    });
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing: run `cargo build --workspace --bins` (make test does)", path.display());
    path
}

/// The resident set size of process `pid` in bytes (`VmRSS`), if it runs.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A service run as its own process (`sb-edge`, `sb-auth`, …) with a fixed
/// environment, killed with SIGKILL and started again with the same one.
pub struct ServiceProcess {
    /// Its name in logs and reports (`edge-1`).
    pub name: String,
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts `bin` with `env` (and nothing else of ours), logging to `log_dir/<name>.log`.
    pub fn start(name: &str, bin: &Path, env: Vec<(String, String)>, log_dir: &Path) -> anyhow::Result<Self> {
        let mut process = Self {
            name: name.to_owned(),
            bin: bin.to_path_buf(),
            env,
            log: log_dir.join(format!("{name}.log")),
            child: None,
        };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.bin);
        command.env_clear();
        for key in ["PATH", "HOME", "RUST_BACKTRACE"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command.env("RUST_LOG", std::env::var("CLUSTER_LOG").unwrap_or_else(|_| "warn".to_owned()));
        command.env("OTEL_SDK_DISABLED", "true");
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = command
            .stdin(Stdio::null())
            .stdout(log_to(&self.log)?)
            .stderr(log_to(&self.log)?)
            .spawn()
            .with_context(|| format!("start {} ({})", self.name, self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it has exited (or was killed).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as Kubernetes sends before it deletes a pod: the service
    /// begins its stop (an edge drains first) and exits by itself.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        let pid = self.pid().with_context(|| format!("{} is not running", self.name))?;
        let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().context("run kill -TERM")?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} ({}) failed: {status}", self.name);
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit by itself (after
    /// [`Self::terminate`]); whether it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.exited() {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// Starts it again with the same environment (SIGKILL first if it still runs).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// The end of its log, for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `GET /readyz` on `addr` answers 200, or fails after `timeout`.
pub async fn wait_ready(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok((status, _)) = crate::http::http_get(addr, "/readyz").await
            && status.contains(" 200")
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{addr} was not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP balancer in front of the edges, as a cloud load balancer (or a
/// Kubernetes Service) would be: one front port per edge, which forwards to
/// that edge while it is ready and otherwise to the next ready edge; an
/// edge is ready while its `GET /readyz` answers 200 (probed every
/// [`BALANCER_PROBE`]). When no edge is ready (or a probe has not yet seen a
/// kill) it tries every edge that accepts a TCP connection, in the same
/// order. Clients that reconnect after their edge died or began to drain
/// land on a surviving edge.
pub struct Balancer {
    /// The front addresses, one per edge (in edge order).
    pub fronts: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How often the balancer probes each edge's readiness.
pub const BALANCER_PROBE: Duration = Duration::from_millis(200);

impl Balancer {
    /// Starts one front per backend in `backends`, and their readiness probes.
    pub async fn start(backends: Vec<SocketAddr>) -> anyhow::Result<Self> {
        let ready: Arc<Vec<std::sync::atomic::AtomicBool>> =
            Arc::new(backends.iter().map(|_| std::sync::atomic::AtomicBool::new(true)).collect());
        let backends = Arc::new(backends);
        let mut fronts = Vec::new();
        let mut tasks = Vec::new();
        for (index, backend) in backends.iter().copied().enumerate() {
            let ready = ready.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let ok = matches!(
                        tokio::time::timeout(BALANCER_PROBE, crate::http::http_get(backend, "/readyz")).await,
                        Ok(Ok((status, _))) if status.contains(" 200")
                    );
                    ready[index].store(ok, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(BALANCER_PROBE).await;
                }
            }));
        }
        for preferred in 0..backends.len() {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bind a balancer front")?;
            fronts.push(listener.local_addr()?);
            let (backends, ready) = (backends.clone(), ready.clone());
            tasks.push(tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let rotation = (0..backends.len()).map(|offset| (preferred + offset) % backends.len());
                    let (live, rest): (Vec<usize>, Vec<usize>) =
                        rotation.partition(|i| ready[*i].load(std::sync::atomic::Ordering::Relaxed));
                    let order: Vec<SocketAddr> = live.into_iter().chain(rest).map(|i| backends[i]).collect();
                    tokio::spawn(async move {
                        for backend in order {
                            if let Ok(Ok(mut upstream)) =
                                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(backend))
                                    .await
                            {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                                return;
                            }
                        }
                    });
                }
            }));
        }
        Ok(Self { fronts, tasks })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
