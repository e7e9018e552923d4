//! One Socket.IO connection over a raw WebSocket, and the context every
//! connection of a run opens itself from.
//!
//! [`Connection::open`] binds the TCP socket to a source address with
//! `IP_BIND_ADDRESS_NO_PORT` (the port is chosen at `connect`, so each
//! source address in 127.0.0.0/8 brings its own ~28k ephemeral ports per
//! destination), upgrades to a WebSocket, waits for the Engine.IO open,
//! sends CONNECT with the token and waits for the answer. A connection is
//! a WebSocket stream and nothing else; scenarios keep their own few
//! bytes of state in their task.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::protocol::{self, Packet};
use crate::settings::ServerUrl;
use crate::token::{TokenMinter, TokenSpec};
use crate::{ClientSettings, Error};

/// Where a connection puts its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPlacement {
    /// The CONNECT auth object `{"token": …}` (what the official client does with `auth`).
    AuthObject,
    /// `?token=` on the URL.
    Query,
    /// `Authorization: Bearer …` on the upgrade request.
    Header,
}

/// Why a connection could not be opened, or broke.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP socket failed (bind, connect, read, write).
    #[error("tcp: {0}")]
    Tcp(#[from] std::io::Error),
    /// The WebSocket upgrade failed.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// The server answered CONNECT with CONNECT_ERROR (payload attached).
    #[error("connect_error {0}")]
    Rejected(String),
    /// The server closed the connection.
    #[error("closed by the server")]
    Closed,
    /// The server sent something a Socket.IO server would not.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The handshake took longer than `--connect-timeout`.
    #[error("timed out")]
    Timeout,
}

impl ConnectError {
    /// A short category to count failures by: `tcp:EMFILE`, `ws_handshake`,
    /// `connect_error`, `closed`, `protocol`, `timeout`.
    pub fn kind(&self) -> String {
        match self {
            Self::Tcp(error) => match error.raw_os_error() {
                Some(code) => format!("tcp:{:?}", nix::errno::Errno::from_raw(code)),
                None => format!("tcp:{:?}", error.kind()),
            },
            Self::WebSocket(_) => "ws_handshake".to_owned(),
            Self::Rejected(_) => "connect_error".to_owned(),
            Self::Closed => "closed".to_owned(),
            Self::Protocol(_) => "protocol".to_owned(),
            Self::Timeout => "timeout".to_owned(),
        }
    }
}

impl From<tungstenite::Error> for ConnectError {
    fn from(error: tungstenite::Error) -> Self {
        match error {
            tungstenite::Error::Io(io) => Self::Tcp(io),
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Self::Closed,
            tungstenite::Error::Http(response) => Self::WebSocket(format!("http {}", response.status())),
            other => Self::WebSocket(other.to_string()),
        }
    }
}

/// A monotonic clock shared by every task of a run: the send time embedded
/// in a message and the receive time come from the same origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self { origin: Instant::now() }
    }

    /// Microseconds since the clock started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// What every connection of a run needs to open itself.
pub struct Ctx {
    /// The settings it was made from.
    pub settings: ClientSettings,
    /// Where to connect.
    pub server: ServerUrl,
    /// Signs the users' tokens.
    pub minter: TokenMinter,
    /// The run's clock.
    pub clock: Clock,
    ws_config: WebSocketConfig,
}

impl Ctx {
    /// Checks `settings` (loopback only unless allowed) and prepares the run.
    pub fn new(settings: ClientSettings) -> Result<Self, Error> {
        let server: ServerUrl = settings.url.parse()?;
        if !settings.allow_non_loopback {
            if !server.addr.ip().is_loopback() {
                return Err(Error::NonLoopback(server.addr.ip()));
            }
            if let Some(ip) = settings.source_ips.0.iter().find(|ip| !ip.is_loopback()) {
                return Err(Error::NonLoopback(IpAddr::V4(*ip)));
            }
        }
        if settings.users == 0 {
            return Err(Error::invalid("users", "must be at least 1"));
        }
        if settings.read_buffer < 256 {
            return Err(Error::invalid("read-buffer", "must be at least 256 bytes"));
        }
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(settings.read_buffer)
            // Every frame is written at once: no per-connection write buffer to grow.
            .write_buffer_size(0)
            .max_message_size(Some(16 << 20));
        Ok(Self {
            minter: TokenMinter::new(settings.secret.as_bytes()),
            server,
            clock: Clock::start(),
            ws_config,
            settings,
        })
    }

    /// The seeded user number of logical client `index` (`u1..uN`, wrapping past N).
    pub fn user_number(&self, index: u64) -> u64 {
        1 + (self.settings.user_offset + index) % self.settings.users
    }

    /// The user id of logical client `index`.
    pub fn user_id(&self, index: u64) -> String {
        format!("u{}", self.user_number(index))
    }

    /// The source address of connection `index` (round-robin).
    pub fn source_ip(&self, index: u64) -> Ipv4Addr {
        let ips = &self.settings.source_ips.0;
        ips[(index % ips.len() as u64) as usize]
    }

    /// Opens connection `index` as logical client `user_index` with a current token.
    pub async fn open_as(&self, index: u64, user_index: u64) -> Result<Connection, ConnectError> {
        let token = self
            .minter
            .seeded_user(self.user_number(user_index), TokenSpec::default())
            .map_err(|error| ConnectError::Protocol(error.to_string()))?;
        Connection::open(self, self.source_ip(index), Some(&token), TokenPlacement::AuthObject).await
    }
}

/// An open Socket.IO connection (namespace `/`).
pub struct Connection {
    ws: WebSocketStream<TcpStream>,
}

impl Connection {
    /// TCP from `source`, WebSocket upgrade, Engine.IO open, CONNECT with
    /// `token`; returns once the server accepted. Bounded by `--connect-timeout`.
    pub async fn open(
        ctx: &Ctx,
        source: Ipv4Addr,
        token: Option<&str>,
        placement: TokenPlacement,
    ) -> Result<Self, ConnectError> {
        tokio::time::timeout(ctx.settings.connect_timeout, Self::handshake(ctx, source, token, placement))
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }

    async fn handshake(
        ctx: &Ctx,
        source: Ipv4Addr,
        token: Option<&str>,
        placement: TokenPlacement,
    ) -> Result<Self, ConnectError> {
        let server = ctx.server.addr;
        let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if server.is_ipv4() {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
                .map_err(std::io::Error::from)?;
            socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        }
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;

        let mut url = ctx.server.ws_url.clone();
        if let (TokenPlacement::Query, Some(token)) = (placement, token) {
            url.push_str(if url.contains('?') { "&token=" } else { "?token=" });
            url.push_str(token);
        }
        let mut request = url.into_client_request()?;
        if let (TokenPlacement::Header, Some(token)) = (placement, token) {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ConnectError::Protocol("the token cannot be a header value".to_owned()))?;
            request.headers_mut().insert("authorization", value);
        }
        let (ws, _response) = client_async_with_config(request, stream, Some(ctx.ws_config)).await?;
        let mut connection = Self { ws };

        let open = connection.recv().await?;
        if !matches!(Packet::parse(&open), Packet::Open(_)) {
            return Err(ConnectError::Protocol(format!("expected the engine.io open, got {:.60}", open.as_str())));
        }
        let auth = if placement == TokenPlacement::AuthObject { token } else { None };
        connection.send(protocol::connect_frame(auth)).await?;
        loop {
            let frame = connection.recv().await?;
            match Packet::parse(&frame) {
                Packet::Ping => connection.send(protocol::PONG.to_owned()).await?,
                Packet::Connect(_) => return Ok(connection),
                Packet::ConnectError(payload) => return Err(ConnectError::Rejected(payload.to_owned())),
                Packet::Close | Packet::Disconnect => return Err(ConnectError::Closed),
                // Nothing else should precede the CONNECT answer; skip it (the timeout bounds this).
                _ => {}
            }
        }
    }

    /// The next text frame. Cancel-safe: usable as a `select!` branch.
    pub async fn recv(&mut self) -> Result<Utf8Bytes, ConnectError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(Message::Close(_))) | None => return Err(ConnectError::Closed),
                // WebSocket pings are answered by tungstenite itself; binary frames are not ours.
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
            }
        }
    }

    /// Sends one text frame.
    pub async fn send(&mut self, frame: String) -> Result<(), ConnectError> {
        Ok(self.ws.send(Message::text(frame)).await?)
    }

    /// Answers `frame` if it is an Engine.IO ping; returns whether it was.
    pub async fn answer_ping(&mut self, frame: &str) -> Result<bool, ConnectError> {
        if frame != "2" {
            return Ok(false);
        }
        self.send(protocol::PONG.to_owned()).await?;
        Ok(true)
    }

    /// Leaves politely: Socket.IO DISCONNECT, then a WebSocket close (bounded to 2 s).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.send(protocol::DISCONNECT.to_owned()).await;
            let _ = self.ws.close(None).await;
        })
        .await;
    }
}
