//! Settings every scenario shares: where to connect and how
//! ([`ClientSettings`]), and how a run is measured and labelled
//! ([`RunSettings`]).
//!
//! Both derive `clap::Args` (the binary flattens them into its command
//! line, every flag `global` so it may stand before or after the scenario)
//! and are plain structs for tests. Flag names and defaults are the shared
//! bench loadgen's, so its command lines in `BASELINE.md` work unchanged;
//! durations also accept `250ms` / `5s` / `2m` where the old tool took
//! plain seconds.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::Error;

/// Where the server is and how each connection is opened.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ClientSettings {
    /// Server URL `ws://HOST:PORT` (or `http://`); `/socket.io/?EIO=4&transport=websocket` is added when no path is given.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:3000")]
    pub url: String,
    /// HS256 secret the tokens are signed with (the server's `JWT_SECRET`).
    #[arg(long, global = true, env = "JWT_SECRET", hide_env_values = true, default_value = "dev-secret")]
    #[serde(skip)]
    pub secret: String,
    /// Seeded users `u1..uN` on the server; client i is user `u(1 + (offset + i) mod N)`.
    #[arg(long, global = true, default_value_t = 100_000)]
    pub users: u64,
    /// Offset into the user range, so several loadgens can run side by side without sharing users.
    #[arg(long, global = true, default_value_t = 0)]
    pub user_offset: u64,
    /// Source addresses: a count K (127.0.0.1..127.0.0.K), a list `a,b,c` or a range `a-b`; sockets take them round-robin.
    #[arg(long, global = true, default_value = "1")]
    pub source_ips: SourceIps,
    /// Longest handshake of one connection (TCP + WebSocket + Socket.IO CONNECT), e.g. `10`, `10s`, `500ms`.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub connect_timeout: Duration,
    /// Connections opened per second while a scenario sets up (fanout, private, broadcast, churn observers).
    #[arg(long, global = true, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Handshakes in flight at once.
    #[arg(long, global = true, default_value_t = 256)]
    pub max_inflight: usize,
    /// WebSocket read buffer per connection, bytes (the shared loadgen used 4096).
    #[arg(long, global = true, default_value_t = 4096)]
    pub read_buffer: usize,
    /// Allow targets and sources outside 127.0.0.0/8.
    #[arg(long, global = true, default_value_t = false)]
    pub allow_non_loopback: bool,
}

impl ClientSettings {
    /// Settings for a server at `url` whose tokens are signed with `secret`,
    /// everything else at its default.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            users: 100_000,
            user_offset: 0,
            source_ips: SourceIps(vec![Ipv4Addr::LOCALHOST]),
            connect_timeout: Duration::from_secs(10),
            connect_rate: 2000.0,
            max_inflight: 256,
            read_buffer: 4096,
            allow_non_loopback: false,
        }
    }
}

/// How a run is measured and named in its report.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct RunSettings {
    /// Free-form label copied into the report.
    #[arg(long, global = true)]
    pub label: Option<String>,
    /// Series name for `report` plots; default: the scenario and its shape without the rate (`fanout 10x100 s1`).
    #[arg(long, global = true)]
    pub group: Option<String>,
    /// Warm-up before the measured window; messages sent in it are delivered but not counted.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub warmup: Duration,
    /// Measured window (fanout, private, broadcast: sending; churn: cycling; idle: holding).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub duration: Duration,
    /// A server process to account for, `NAME=PID` or `PID` (repeatable): `--pid edge=123 --pid nats=456`.
    #[arg(long = "pid", global = true)]
    pub pids: Vec<WatchedProcess>,
    /// A run whose other processes used more than this (percent of one core) is marked `noisy`.
    #[arg(long, global = true, default_value_t = 25.0)]
    pub noisy_threshold_pct: f64,
    /// The command line recorded in the report (the binary fills in its own;
    /// the report carries it once, as its top-level `command`).
    #[arg(skip)]
    #[serde(skip)]
    pub command: Vec<String>,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            label: None,
            group: None,
            warmup: Duration::from_secs(5),
            duration: Duration::from_secs(30),
            pids: Vec::new(),
            noisy_threshold_pct: 25.0,
            command: Vec::new(),
        }
    }
}

/// Serializes a duration as fractional seconds.
pub(crate) fn as_seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// Parses `20` or `1.5` (seconds, as the shared loadgen took them), `250ms`, `5s`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("{text:?} is not a duration like 5s or 250ms"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} must be a non-negative duration"));
    }
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
}

/// Source addresses sockets bind to, round-robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIps(pub Vec<Ipv4Addr>);

impl FromStr for SourceIps {
    type Err = String;

    /// `4` → 127.0.0.1..127.0.0.4; `127.0.0.1,127.0.0.5` → that list; `127.0.0.1-127.0.0.8` → that range.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(count) = text.parse::<u8>() {
            if count == 0 {
                return Err("the source address count must be at least 1".to_owned());
            }
            return Ok(Self((1..=count).map(|last| Ipv4Addr::new(127, 0, 0, last)).collect()));
        }
        let mut addresses = Vec::new();
        for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let parse = |ip: &str| ip.trim().parse::<Ipv4Addr>().map_err(|_| format!("{ip:?} is not an IPv4 address"));
            if let Some((first, last)) = part.split_once('-') {
                let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
                if last < first || last - first > 65_535 {
                    return Err(format!("bad source address range {part}"));
                }
                addresses.extend((first..=last).map(Ipv4Addr::from));
            } else {
                addresses.push(parse(part)?);
            }
        }
        if addresses.is_empty() {
            return Err("no source addresses".to_owned());
        }
        Ok(Self(addresses))
    }
}

impl Serialize for SourceIps {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

/// A process whose CPU time and RSS the run accounts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchedProcess {
    /// What to call it in the report; `None`: its `/proc/PID/comm`.
    pub name: Option<String>,
    /// Its process id.
    pub pid: u32,
}

impl FromStr for WatchedProcess {
    type Err = String;

    /// `edge=123` or `123`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (name, pid) = match text.split_once('=') {
            Some((name, pid)) if !name.trim().is_empty() => (Some(name.trim().to_owned()), pid),
            Some(_) => return Err(format!("{text:?}: the name before '=' is empty")),
            None => (None, text),
        };
        let pid = pid.trim().parse().map_err(|_| format!("{text:?} is not NAME=PID or PID"))?;
        Ok(Self { name, pid })
    }
}

/// The server address and the WebSocket URL, from `--url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `ws://host:port/socket.io/?EIO=4&transport=websocket`.
    pub ws_url: String,
    /// Where to connect.
    pub addr: SocketAddr,
}

impl FromStr for ServerUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| Error::invalid("url", "must start with ws:// or http:// (no TLS)"))?;
        let (host_port, path) = rest.find('/').map_or((rest, ""), |slash| rest.split_at(slash));
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| Error::invalid("url", "bad port"))?),
            None => (host_port, 80),
        };
        let ip: IpAddr = if host == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.trim_matches(['[', ']'])
                .parse()
                .map_err(|_| Error::invalid("url", "host must be an IP or localhost"))?
        };
        let path = if path.is_empty() || path == "/" { "/socket.io/?EIO=4&transport=websocket" } else { path };
        Ok(Self { ws_url: format!("ws://{host_port}{path}"), addr: SocketAddr::new(ip, port) })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ws_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_plain_seconds_and_units() {
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn source_ips_take_a_count_a_list_or_a_range() {
        let three: SourceIps = "3".parse().expect("count");
        assert_eq!(three.0, [1, 2, 3].map(|last| Ipv4Addr::new(127, 0, 0, last)));
        assert_eq!("127.0.0.5-127.0.0.6".parse::<SourceIps>().expect("range").0.len(), 2);
        assert_eq!("127.0.0.1,127.0.0.9".parse::<SourceIps>().expect("list").0[1], Ipv4Addr::new(127, 0, 0, 9));
        assert!("0".parse::<SourceIps>().is_err());
        assert!("127.0.0.9-127.0.0.1".parse::<SourceIps>().is_err());
    }

    #[test]
    fn watched_processes_are_name_pid_or_pid() {
        assert_eq!(
            "edge=123".parse::<WatchedProcess>(),
            Ok(WatchedProcess { name: Some("edge".to_owned()), pid: 123 })
        );
        assert_eq!("456".parse::<WatchedProcess>(), Ok(WatchedProcess { name: None, pid: 456 }));
        assert!("=1".parse::<WatchedProcess>().is_err());
        assert!("edge=x".parse::<WatchedProcess>().is_err());
    }

    #[test]
    fn urls_get_the_socket_io_path() {
        let url: ServerUrl = "ws://127.0.0.1:3000".parse().expect("url");
        assert_eq!(url.ws_url, "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket");
        assert_eq!(url.addr.port(), 3000);
        let url: ServerUrl = "http://localhost:4000/custom/?EIO=4&transport=websocket".parse().expect("url");
        assert_eq!(url.ws_url, "ws://localhost:4000/custom/?EIO=4&transport=websocket");
        assert!("wss://127.0.0.1:1".parse::<ServerUrl>().is_err());
        assert!("ws://example.com:1".parse::<ServerUrl>().is_err());
    }
}
