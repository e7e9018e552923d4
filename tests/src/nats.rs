//! A private nats-server per test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// A `nats-server -js` on a free loopback port with its own store directory,
/// killed when dropped. The binary is `NATS_SERVER_BIN`, else `nats-server`
/// on `PATH`, else `/usr/sbin/nats-server`.
pub struct NatsServer {
    child: Option<std::process::Child>,
    url: String,
    port: u16,
    dir: tempfile::TempDir,
    /// The configuration file, for a server started with [`Self::start_with_config`].
    config: Option<String>,
}

/// The nats-server binary: `NATS_SERVER_BIN`, else `nats-server` on `PATH`, else `/usr/sbin/nats-server`.
pub fn nats_server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    for dir in std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default() {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("/usr/sbin/nats-server")
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("create nats temp dir")?;
        Self::start_in(dir, 0, None).await
    }

    /// Starts a server with the configuration `config` (authorization,
    /// accounts, TLS: nats-server's config syntax) on a free port, with
    /// JetStream in its own store. It may require credentials or TLS, so
    /// readiness is the listener accepting a TCP connection. `config` may
    /// name files in [`Self::dir`] (write them first: [`Self::scratch_dir`]).
    pub async fn start_with_config(dir: tempfile::TempDir, config: &str) -> anyhow::Result<Self> {
        Self::start_in(dir, 0, Some(config.to_owned())).await
    }

    /// A temp dir for a server's files (certificates, seeds) before it starts.
    pub fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
        tempfile::tempdir().context("create nats temp dir")
    }

    /// The server's directory (its store, ports file and config).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    async fn start_in(dir: tempfile::TempDir, port: u16, config: Option<String>) -> anyhow::Result<Self> {
        let store = dir.path().join("js");
        let ports_dir = dir.path().join("ports");
        std::fs::create_dir_all(&ports_dir).context("create ports dir")?;
        let port_arg = if port == 0 { "-1".to_owned() } else { port.to_string() };
        let bin = nats_server_binary();
        let mut command = std::process::Command::new(&bin);
        if let Some(config) = &config {
            let file = dir.path().join("nats-server.conf");
            std::fs::write(&file, config).context("write the nats-server config")?;
            command.arg("-c").arg(file);
        }
        let child = command
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdout(Stdio::null())
            .stderr(log_file(dir.path()))
            .spawn()
            .with_context(|| format!("start {} (install nats-server or set NATS_SERVER_BIN)", bin.display()))?;
        let pid = child.id();
        let ports_file = ports_dir
            .join(format!("{}_{pid}.ports", bin.file_name().and_then(|n| n.to_str()).unwrap_or("nats-server")));
        let secured = config.is_some();
        let mut server = Self { child: Some(child), url: String::new(), port: 0, dir, config };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file)
                && let Some(url) = parse_client_url(&text)
            {
                server.port = url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
                server.url = url;
                break;
            }
            if let Some(child) = server.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(server.dir.path().join("nats-server.log")).unwrap_or_default();
                bail!("nats-server exited at start-up: {status}: {}", log.trim());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("nats-server did not write its ports file within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if secured {
            tokio::net::TcpStream::connect(("127.0.0.1", server.port))
                .await
                .context("connect to the test nats-server")?;
            return Ok(server);
        }
        // The ports file appears once the listener is up; one round-trip makes sure.
        let client = async_nats::connect(&server.url).await.context("connect to the test nats-server")?;
        round_trip(&client).await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills the server (SIGKILL) without removing its store: [`Self::restart`]
    /// brings it back on the same port with the same JetStream data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is
    /// answered, as with a server that hangs or a network that drops
    /// packets. [`Self::resume`] lets it go on.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`Self::pause`]d server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = self.child.as_ref() {
            let status = std::process::Command::new("kill").arg(signal).arg(child.id().to_string()).status();
            assert!(status.is_ok_and(|status| status.success()), "kill {signal} nats-server");
        }
    }

    /// Starts the server again on the same port and store after [`Self::kill`].
    pub async fn restart(mut self) -> anyhow::Result<Self> {
        self.kill();
        let port = self.port;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        let _ = std::fs::remove_dir_all(dir.path().join("ports"));
        let config = self.config.take();
        Self::start_in(dir, port, config).await
    }
}

/// Where a server's log goes: a file in its directory when it can be
/// created (a failed start-up then says why), else nowhere.
fn log_file(dir: &std::path::Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nats-server.log"))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

fn parse_client_url(text: &str) -> Option<String> {
    // {"nats":["nats://127.0.0.1:4222"], ...} (`tls://` when the server requires TLS)
    let start = text.find("nats://").or_else(|| text.find("tls://"))?;
    let rest = &text[start..];
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the server has handled everything `client` sent before it,
/// subscriptions included, so another connection's next publish reaches
/// them. `Client::flush` is not enough: it only writes the socket. A message
/// to a fresh inbox on the same connection comes back only after the server
/// processed what came before it.
pub async fn round_trip(client: &async_nats::Client) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.context("subscribe to a round-trip inbox")?;
    client.publish(inbox, bytes::Bytes::new()).await.context("publish the round-trip message")?;
    tokio::time::timeout(Duration::from_secs(10), echo.next())
        .await
        .context("no round trip through nats-server within 10 s")?
        .context("the round-trip subscription closed")?;
    Ok(())
}
