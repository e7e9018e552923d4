//! A private PostgreSQL server for tests that need one of their own: TLS
//! with a test certificate, or a server the test can restart.
//!
//! `initdb` and `pg_ctl` come from `PG_BIN_DIR`, else the newest
//! `/usr/lib/postgresql/<version>/bin`, else `PATH`. PostgreSQL refuses to run
//! as root, so as root they run as the `postgres` user (`runuser`), which then
//! owns the data directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::tls::CertFiles;

/// A PostgreSQL server on a free loopback port with its own data directory,
/// stopped (immediately) when dropped. Trust authentication for `postgres`
/// on 127.0.0.1; with TLS, `hostssl` only, so every connection uses TLS.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    running: bool,
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for dir in std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default() {
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    bail!("initdb not found: install the PostgreSQL server (Debian: postgresql) or set PG_BIN_DIR")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|out| out.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
fn pg_command(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        command
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl PrivatePostgres {
    /// Initialises and starts a server; with `tls` it requires TLS and
    /// presents that certificate.
    pub async fn start(tls: Option<&CertFiles>) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir().context("create the PostgreSQL temp dir")?;
        let data = dir.path().join("data");
        if is_root() {
            run(
                {
                    let mut chown = Command::new("chown");
                    chown.arg("postgres:postgres").arg(dir.path());
                    chown
                },
                "chown the PostgreSQL temp dir",
            )?;
        }
        let mut initdb = pg_command(&bin, "initdb");
        initdb.args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"]).arg(&data);
        let init = tokio::task::spawn_blocking(move || run(initdb, "initdb"));
        init.await??;

        let port = free_port()?;
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\n\
             max_connections = 200\nshared_buffers = 32MB\n",
            dir.path().display()
        );
        let hba = if let Some(tls) = tls {
            for (from, name) in [(&tls.cert, "server.crt"), (&tls.key, "server.key")] {
                std::fs::copy(from, data.join(name)).with_context(|| format!("copy {name}"))?;
            }
            if is_root() {
                run(
                    {
                        let mut chown = Command::new("chown");
                        chown.arg("postgres:postgres").arg(data.join("server.crt")).arg(data.join("server.key"));
                        chown
                    },
                    "chown the server certificate",
                )?;
            }
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600))?;
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            "hostssl all all 127.0.0.1/32 trust\n"
        } else {
            "host all all 127.0.0.1/32 trust\n"
        };
        append(&data.join("postgresql.conf"), &conf)?;
        std::fs::write(data.join("pg_hba.conf"), format!("local all all trust\n{hba}")).context("write pg_hba.conf")?;

        let mut server = Self { dir, bin, port, running: false };
        server.start_server().await?;
        Ok(server)
    }

    async fn start_server(&mut self) -> anyhow::Result<()> {
        let mut start = pg_command(&self.bin, "pg_ctl");
        start
            .args(["-w", "-t", "60", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .arg("start");
        tokio::task::spawn_blocking(move || run(start, "pg_ctl start")).await??;
        self.running = true;
        Ok(())
    }

    /// Stops the server at once (as a crash would: `pg_ctl stop -m immediate`).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let stop = self.stop_command();
        tokio::task::spawn_blocking(move || run(stop, "pg_ctl stop")).await??;
        self.running = false;
        Ok(())
    }

    /// Starts it again on the same port and data after [`Self::stop`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.running {
            self.stop().await?;
        }
        self.start_server().await
    }

    fn stop_command(&self) -> Command {
        let mut stop = pg_command(&self.bin, "pg_ctl");
        stop.args(["-w", "-m", "immediate", "-D"]).arg(self.dir.path().join("data")).arg("stop");
        stop
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres` plus `query`
    /// (`?sslmode=verify-full&sslrootcert=/ca.pem`), the admin URL for
    /// [`crate::TestDatabase::create_on`].
    pub fn admin_url(&self, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres{query}", self.port)
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file =
        std::fs::OpenOptions::new().append(true).open(path).with_context(|| format!("open {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_command().output();
        }
    }
}

/// Whether this machine can run a private PostgreSQL (its binaries exist).
pub fn available() -> bool {
    bin_dir().is_ok()
}
