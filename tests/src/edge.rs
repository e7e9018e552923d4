//! The edge in tests: [`spawn_edge`] runs an edge in-process on a free port,
//! and [`TestClient`] drives it with `rust_socketio` the way a Socket.IO
//! client does (events, acks, `connect_error`), collecting everything the
//! server sends so a test can wait for it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::FutureExt as _;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::RunningService;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// An edge running in-process.
pub struct EdgeHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The edge's id.
    pub edge_id: String,
    service: RunningService<sb_edge::EdgeError>,
}

impl EdgeHandle {
    /// Starts the graceful stop without waiting for it.
    pub fn begin_stop(&self) {
        self.service.begin_stop();
    }

    /// Stops the edge gracefully and waits until it has.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.service.stop().await
    }
}

/// Edge settings for a test against `nats_url` and auth at `auth_addr`.
pub fn edge_config(nats_url: &str, auth_addr: &str) -> sb_edge::Config {
    sb_edge::Config::for_tests(nats_url, auth_addr)
}

/// The ids of a list of users in an ack (`members`, `users`), sorted, so a
/// test can compare them with the users it expects in any order.
pub fn sorted_ids(users: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        users.as_array().expect("a list of users").iter().map(|u| u["id"].as_str().unwrap_or("").to_owned()).collect();
    ids.sort();
    ids
}

/// Builds and runs an edge with `config`; returns once it listens.
pub async fn spawn_edge(config: sb_edge::Config) -> anyhow::Result<EdgeHandle> {
    sb_telemetry::init_for_tests();
    let app = sb_edge::App::build(config).await.context("build the edge")?;
    let addr = app.local_addr();
    let edge_id = app.edge_id().to_owned();
    let service = RunningService::spawn("edge", |shutdown| app.run(shutdown));
    Ok(EdgeHandle { addr, url: format!("http://{addr}"), edge_id, service })
}

/// Where a client puts its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVia {
    /// `auth: {token}` in the CONNECT packet.
    AuthObject,
    /// `?token=` in the URL.
    Query,
    /// `Authorization: Bearer <token>`.
    Header,
}

/// Which transport a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket only.
    Websocket,
    /// Long-polling only.
    Polling,
    /// Long-polling first, then upgraded to a WebSocket (what the official
    /// client does by default).
    Upgrade,
}

/// Something the server sent.
#[derive(Debug, Clone)]
enum Incoming {
    Connected,
    ConnectError(String),
    Event(String, Value),
    Closed,
    /// A transport error (the connection is gone).
    TransportError(String),
}

/// A Socket.IO client under test.
pub struct TestClient {
    client: Client,
    incoming: Mutex<mpsc::UnboundedReceiver<Incoming>>,
    buffered: Mutex<VecDeque<Incoming>>,
    /// rust_socketio picks ack ids at random from 0..999; one outstanding
    /// ack at a time keeps them from colliding.
    ack_lock: Mutex<()>,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectFailure {
    /// The server answered with `connect_error`; this is its `message`.
    Refused(String),
    /// Anything else.
    Other(anyhow::Error),
}

fn first_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        Payload::Text(_) => Value::Null,
        Payload::Binary(bytes) => Value::String(format!("<{} binary bytes>", bytes.len())),
        #[allow(deprecated)]
        Payload::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

impl TestClient {
    /// Connects to `url` with `token` (none: no token at all) sent `via`
    /// over `transport`, and waits for CONNECT or `connect_error`.
    pub async fn connect(
        url: &str,
        token: Option<&str>,
        via: TokenVia,
        transport: Transport,
    ) -> Result<TestClient, ConnectFailure> {
        Self::connect_and_emit(url, token, via, transport, Vec::new()).await
    }

    /// Like [`Self::connect`], and emits `on_connect` (name, payload) from
    /// inside the client's `connect` callback, as the seed's clients do.
    pub async fn connect_and_emit(
        url: &str,
        token: Option<&str>,
        via: TokenVia,
        transport: Transport,
        on_connect: Vec<(String, Value)>,
    ) -> Result<TestClient, ConnectFailure> {
        let (sender, receiver) = mpsc::unbounded_channel::<Incoming>();
        let address = match (token, via) {
            (Some(token), TokenVia::Query) => format!("{url}/?token={}", urlencode(token)),
            _ => format!("{url}/"),
        };
        let mut builder = ClientBuilder::new(address)
            .reconnect(false)
            .transport_type(match transport {
                Transport::Websocket => TransportType::Websocket,
                Transport::Polling => TransportType::Polling,
                Transport::Upgrade => TransportType::WebsocketUpgrade,
            })
            .on_any({
                let sender = sender.clone();
                move |event: Event, payload: Payload, _client: Client| {
                    let _ = sender.send(Incoming::Event(event.to_string(), first_value(payload)));
                    async {}.boxed()
                }
            })
            .on(Event::Connect, {
                let sender = sender.clone();
                move |_payload: Payload, client: Client| {
                    let _ = sender.send(Incoming::Connected);
                    let emits = on_connect.clone();
                    async move {
                        for (event, data) in emits {
                            let _ = client.emit(event, Payload::Text(vec![data])).await;
                        }
                    }
                    .boxed()
                }
            })
            .on(Event::Close, {
                let sender = sender.clone();
                move |_payload: Payload, _client: Client| {
                    let _ = sender.send(Incoming::Closed);
                    async {}.boxed()
                }
            })
            .on(Event::Error, {
                let sender = sender.clone();
                move |payload: Payload, _client: Client| {
                    let text = match first_value(payload) {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    if let Some(json) = text.strip_prefix("Received an ConnectError frame: ") {
                        let message = serde_json::from_str::<Value>(json)
                            .ok()
                            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                            .unwrap_or_else(|| json.to_owned());
                        let _ = sender.send(Incoming::ConnectError(message));
                    } else {
                        let _ = sender.send(Incoming::TransportError(text));
                    }
                    async {}.boxed()
                }
            });
        match (token, via) {
            (Some(token), TokenVia::AuthObject) => builder = builder.auth(serde_json::json!({ "token": token })),
            (Some(token), TokenVia::Header) => {
                builder = builder.opening_header("Authorization", format!("Bearer {token}"))
            }
            _ => {}
        }
        let client = builder.connect().await.map_err(|error| ConnectFailure::Other(anyhow!("connect: {error}")))?;
        let mut incoming = receiver;
        let mut buffered = VecDeque::new();
        let outcome = tokio::time::timeout(WAIT, async {
            while let Some(item) = incoming.recv().await {
                match item {
                    Incoming::Connected => return Ok(()),
                    Incoming::ConnectError(message) => return Err(ConnectFailure::Refused(message)),
                    Incoming::Closed => return Err(ConnectFailure::Other(anyhow!("closed before CONNECT"))),
                    other => buffered.push_back(other),
                }
            }
            Err(ConnectFailure::Other(anyhow!("client stopped before CONNECT")))
        })
        .await
        .unwrap_or_else(|_| Err(ConnectFailure::Other(anyhow!("no CONNECT or connect_error within {WAIT:?}"))));
        if let Err(failure) = outcome {
            let _ = client.disconnect().await;
            return Err(failure);
        }
        Ok(TestClient {
            client,
            incoming: Mutex::new(incoming),
            buffered: Mutex::new(buffered),
            ack_lock: Mutex::new(()),
        })
    }

    /// Tries to connect and returns the `connect_error` message; an error if
    /// the connection was accepted or failed otherwise.
    pub async fn refusal(
        url: &str,
        token: Option<&str>,
        via: TokenVia,
        transport: Transport,
    ) -> anyhow::Result<String> {
        match Self::connect(url, token, via, transport).await {
            Ok(client) => {
                client.disconnect().await;
                bail!("the connection was accepted")
            }
            Err(ConnectFailure::Refused(message)) => Ok(message),
            Err(ConnectFailure::Other(error)) => Err(error),
        }
    }

    /// Connects over WebSocket with `auth: {token}`.
    pub async fn connect_ws(url: &str, token: &str) -> anyhow::Result<TestClient> {
        Self::connect(url, Some(token), TokenVia::AuthObject, Transport::Websocket).await.map_err(|failure| {
            match failure {
                ConnectFailure::Refused(message) => anyhow!("connection refused: {message}"),
                ConnectFailure::Other(error) => error,
            }
        })
    }

    /// Emits `event` with `data` (no ack).
    pub async fn emit(&self, event: &str, data: Value) -> anyhow::Result<()> {
        self.client.emit(event, Payload::Text(vec![data])).await.map_err(|error| anyhow!("emit {event}: {error}"))
    }

    /// Emits `event` without any argument.
    pub async fn emit_empty(&self, event: &str) -> anyhow::Result<()> {
        self.client.emit(event, Payload::Text(vec![])).await.map_err(|error| anyhow!("emit {event}: {error}"))
    }

    /// Emits `event` with `data` and waits for its ack.
    pub async fn ack(&self, event: &str, data: Value) -> anyhow::Result<Value> {
        self.ack_within(event, data, WAIT).await
    }

    /// [`TestClient::ack`] with its own timeout, for an ack queued behind
    /// thousands of events.
    pub async fn ack_within(&self, event: &str, data: Value, wait: Duration) -> anyhow::Result<Value> {
        let _one_at_a_time = self.ack_lock.lock().await;
        let (sender, receiver) = oneshot::channel::<Value>();
        let sender = Arc::new(parking_lot::Mutex::new(Some(sender)));
        let callback = move |payload: Payload, _client: Client| {
            let value = match first_value(payload) {
                Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
                other => other,
            };
            if let Some(sender) = sender.lock().take() {
                let _ = sender.send(value);
            }
            async {}.boxed()
        };
        self.client
            .emit_with_ack(event, Payload::Text(vec![data]), wait, callback)
            .await
            .map_err(|error| anyhow!("emit {event}: {error}"))?;
        tokio::time::timeout(wait, receiver)
            .await
            .map_err(|_| anyhow!("no ack for {event} within {wait:?}"))?
            .map_err(|_| anyhow!("ack callback for {event} dropped"))
    }

    async fn next_matching(&self, wait: Duration, wanted: impl Fn(&Incoming) -> bool) -> Option<Incoming> {
        {
            let mut buffered = self.buffered.lock().await;
            if let Some(position) = buffered.iter().position(&wanted) {
                return buffered.remove(position);
            }
        }
        let mut incoming = self.incoming.lock().await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, incoming.recv()).await {
                Ok(Some(item)) if wanted(&item) => return Some(item),
                Ok(Some(item)) => self.buffered.lock().await.push_back(item),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Waits for the next `event` whose payload satisfies `matches`.
    pub async fn event_where(&self, event: &str, matches: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let found = self
            .next_matching(WAIT, |item| matches!(item, Incoming::Event(name, data) if name == event && matches(data)))
            .await;
        match found {
            Some(Incoming::Event(_, data)) => Ok(data),
            _ => bail!("no matching {event} within {WAIT:?}"),
        }
    }

    /// Waits for the next `event`.
    pub async fn event(&self, event: &str) -> anyhow::Result<Value> {
        self.event_where(event, |_| true).await
    }

    /// Whether a matching `event` arrives within `quiet` (for "must not
    /// receive" checks; prefer a marker event where the order is known).
    pub async fn receives_within(
        &self,
        event: &str,
        quiet: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        match self
            .next_matching(quiet, |item| matches!(item, Incoming::Event(name, data) if name == event && matches(data)))
            .await
        {
            Some(Incoming::Event(_, data)) => Some(data),
            _ => None,
        }
    }

    /// Waits until the server closed the connection (a DISCONNECT or the
    /// transport going away) and says which.
    pub async fn closed(&self) -> anyhow::Result<String> {
        match self.next_matching(WAIT, |item| matches!(item, Incoming::Closed | Incoming::TransportError(_))).await {
            Some(Incoming::TransportError(error)) => Ok(format!("transport error: {error}")),
            Some(_) => Ok("disconnected".to_owned()),
            None => bail!("the connection was not closed within {WAIT:?}"),
        }
    }

    /// Every event received so far that nobody waited for, oldest first.
    pub async fn drain_events(&self) -> Vec<(String, Value)> {
        let mut incoming = self.incoming.lock().await;
        let mut buffered = self.buffered.lock().await;
        while let Ok(item) = incoming.try_recv() {
            buffered.push_back(item);
        }
        buffered
            .drain(..)
            .filter_map(|item| match item {
                Incoming::Event(name, data) => Some((name, data)),
                _ => None,
            })
            .collect()
    }

    /// Disconnects.
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Claims of a token minted by a test.
#[derive(Debug, Clone)]
pub struct MintedClaims<'a> {
    /// `sub`.
    pub user_id: &'a str,
    /// `email`.
    pub email: &'a str,
    /// `role`: `user` or `admin`.
    pub role: &'a str,
    /// `tokenVersion`.
    pub token_version: i64,
    /// Seconds from now until `exp` (negative: already expired).
    pub expires_in_s: i64,
}

/// An HS256 token with the contract's claims, signed with `secret`.
pub fn mint_token(secret: &str, claims: &MintedClaims<'_>) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let payload = serde_json::json!({
        "sub": claims.user_id,
        "email": claims.email,
        "role": claims.role,
        "tokenVersion": claims.token_version,
        "iat": now,
        "exp": now + claims.expires_in_s,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing of JSON claims works")
}
