//! The only way services talk to NATS: [`Bus`] wraps the client and the
//! JetStream context, injects the W3C trace context into every message it
//! sends, encodes payloads as JSON, and defines the streams.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;

use sb_config::{NatsArgs, NatsAuth, NatsServers};

use crate::ingest::MessageAccepted;
use crate::rpc::{Reply, RpcError};
use crate::{HEADER_MSG_ID, Subjects};

/// Longest wait of each step of [`Bus::close`] (flush, then drain).
pub const CLOSE_STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the ingest and presence streams remember a `Nats-Msg-Id`, so a
/// republished message is stored once. A stream must keep messages at least
/// this long (`PRESENCE_STREAM_MAX_AGE`).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The initial connection failed.
    #[error("connect to NATS at {url}{tls}: {source}")]
    Connect {
        /// `NATS_URL`, without credentials.
        url: String,
        /// The TLS settings in force (` with TLS: NATS_TLS_CA_FILE=…`), or empty.
        tls: String,
        /// What the client said.
        source: async_nats::ConnectError,
    },
    /// NATS refused the credentials (or asked for some and none are set).
    #[error("NATS at {url} refused the credentials from {setting}: {source}")]
    Refused {
        /// `NATS_URL`, without credentials.
        url: String,
        /// The setting to fix (`NATS_CREDS_FILE=/etc/nats/app.creds`).
        setting: String,
        /// What the client said.
        source: async_nats::ConnectError,
    },
    /// The NATS settings do not work together, or a file they name is unusable.
    #[error(transparent)]
    Settings(#[from] sb_config::NatsSettingError),
    /// A credentials or seed file could not be read.
    #[error("read {setting}: {source}")]
    CredentialsFile {
        /// The setting and its path (`NATS_CREDS_FILE=/x`).
        setting: String,
        /// Why.
        source: std::io::Error,
    },
    /// A URL in `NATS_URL` does not parse.
    #[error("NATS_URL has an unusable URL {url}: {source}")]
    Url {
        /// The URL, without credentials.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// `SUBJECT_PREFIX` is not usable.
    #[error(transparent)]
    Prefix(#[from] crate::subject::InvalidPrefix),
    /// A core publish failed (the client's buffer is full or closed).
    #[error("publish to {subject}: {source}")]
    Publish {
        /// Where.
        subject: String,
        /// Why.
        source: async_nats::PublishError,
    },
    /// A published message could not be written out to NATS in time.
    #[error("flush {subject} to NATS: {reason}")]
    Flush {
        /// The subject published to.
        subject: String,
        /// Why the client did not write it out (an error, or the timeout).
        reason: String,
    },
    /// A JetStream publish was not acknowledged by the stream.
    #[error("publish to stream subject {subject}: {source}")]
    JetStreamPublish {
        /// Where.
        subject: String,
        /// Why.
        source: async_nats::jetstream::context::PublishError,
    },
    /// A request got no answer (no responder, or the timeout passed).
    #[error("request on {subject}: {source}")]
    Request {
        /// Where.
        subject: String,
        /// Why.
        source: async_nats::RequestError,
    },
    /// The responder answered with an error.
    #[error("{subject} answered: {source}")]
    Remote {
        /// Where.
        subject: String,
        /// The answer.
        source: RpcError,
    },
    /// A stream could not be created or looked up.
    #[error("create stream {stream}: {source}")]
    Stream {
        /// Which stream.
        stream: String,
        /// Why.
        source: async_nats::jetstream::context::CreateStreamError,
    },
    /// A subscription could not be made.
    #[error("subscribe to {subject}: {source}")]
    Subscribe {
        /// Where.
        subject: String,
        /// Why.
        source: async_nats::SubscribeError,
    },
    /// A payload is not the JSON we expect.
    #[error("decode payload on {subject}: {source}")]
    Decode {
        /// Where it came from.
        subject: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A payload could not be encoded (a bug).
    #[error("encode payload: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A connected NATS client, its JetStream context and the subject map.
#[derive(Clone, Debug)]
pub struct Bus {
    /// The core client (subscribe with it; publish through [`Bus`]).
    pub client: async_nats::Client,
    /// The JetStream context.
    pub jetstream: jetstream::Context,
    /// Every subject of this deployment.
    pub subjects: Subjects,
    /// How long requests wait for an answer.
    pub request_timeout: Duration,
}

/// `switchboard_<service>_nats_connected`: 1 while the NATS connection is
/// up, 0 while the client is reconnecting; read from the client at each scrape.
#[derive(Debug)]
pub struct NatsConnectedCollector {
    client: async_nats::Client,
}

impl prometheus_client::collector::Collector for NatsConnectedCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        let connected = matches!(self.client.connection_state(), async_nats::connection::State::Connected);
        let gauge = prometheus_client::metrics::gauge::ConstGauge::new(i64::from(connected));
        let metric = encoder.encode_descriptor(
            "nats_connected",
            "1 while the NATS connection is up, 0 while reconnecting",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

impl Bus {
    /// Registers `nats_connected` in `registry` (give it the service's
    /// `switchboard_<service>` prefix; docs/metrics.md).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(NatsConnectedCollector { client: self.client.clone() }));
    }

    /// Connects as `name` (shown by `nats server report connections`) with
    /// the URLs, credentials and TLS of `nats`, the same way in every service.
    /// The client reconnects by itself after the first connection succeeded;
    /// a refused credential or a failed TLS handshake fails here, naming the
    /// setting to fix.
    pub async fn connect(nats: &NatsArgs, name: &str) -> Result<Self, BusError> {
        let subjects = Subjects::new(&nats.subject_prefix)?;
        let servers = nats.servers()?;
        let options = connect_options(&servers, name).await?;
        let addrs = servers
            .urls
            .iter()
            .map(|url| {
                url.parse::<async_nats::ServerAddr>().map_err(|source| BusError::Url { url: url.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = options.connect(addrs).await.map_err(|source| connect_error(&servers, source))?;
        Ok(Self::from_client(client, subjects))
    }

    /// Wraps an existing client.
    pub fn from_client(client: async_nats::Client, subjects: Subjects) -> Self {
        let jetstream = jetstream::new(client.clone());
        Self { client, jetstream, subjects, request_timeout: Duration::from_secs(5) }
    }

    /// Publishes `payload` as JSON on a core subject, with trace headers.
    pub async fn publish<T: Serialize + ?Sized>(&self, subject: String, payload: &T) -> Result<(), BusError> {
        let bytes = Bytes::from(serde_json::to_vec(payload)?);
        self.publish_bytes(subject, bytes).await
    }

    /// Publishes `payload` and waits, at most `timeout`, until the client has
    /// written it to NATS (while NATS is unreachable the client would
    /// otherwise hold it until a reconnect).
    pub async fn publish_flushed<T: Serialize + ?Sized>(
        &self,
        subject: String,
        payload: &T,
        timeout: Duration,
    ) -> Result<(), BusError> {
        let flushed = async {
            self.publish(subject.clone(), payload).await?;
            self.client
                .flush()
                .await
                .map_err(|error| BusError::Flush { subject: subject.clone(), reason: error.to_string() })
        };
        match tokio::time::timeout(timeout, flushed).await {
            Ok(outcome) => outcome,
            Err(_) => Err(BusError::Flush { subject, reason: format!("not written within {timeout:?}") }),
        }
    }

    /// Publishes already-encoded bytes on a core subject, with trace headers.
    pub async fn publish_bytes(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        let span = sb_telemetry::nats::producer_span(&subject, None);
        self.publish_bytes_in(span, subject, payload).await
    }

    /// As [`Bus::publish_bytes`], inside the given producer span (e.g.
    /// [`sb_telemetry::nats::producer_span_in`]; `Span::none()`: no trace).
    pub async fn publish_bytes_in(&self, span: tracing::Span, subject: String, payload: Bytes) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        sb_telemetry::nats::inject_span(&span, &mut headers);
        self.client
            .publish_with_headers(subject.clone(), headers, payload)
            .instrument(span)
            .await
            .map_err(|source| BusError::Publish { subject, source })
    }

    /// Publishes `payload` to a stream with `Nats-Msg-Id` = `msg_id` and waits
    /// for the stream's acknowledgement: once this returns `Ok`, the message
    /// is stored (a duplicate id within the stream's window is stored once).
    pub async fn publish_durable<T: Serialize + ?Sized>(
        &self,
        subject: String,
        msg_id: &str,
        payload: &T,
    ) -> Result<jetstream::publish::PublishAck, BusError> {
        let bytes = Bytes::from(serde_json::to_vec(payload)?);
        let span = sb_telemetry::nats::producer_span(&subject, Some(msg_id));
        let mut headers = HeaderMap::new();
        sb_telemetry::nats::inject_span(&span, &mut headers);
        headers.insert(HEADER_MSG_ID, msg_id);
        async {
            let pending = self
                .jetstream
                .publish_with_headers(subject.clone(), headers, bytes)
                .await
                .map_err(|source| BusError::JetStreamPublish { subject: subject.clone(), source })?;
            pending.await.map_err(|source| BusError::JetStreamPublish { subject, source })
        }
        .instrument(span)
        .await
    }

    /// Publishes an accepted message to the ingest stream: the subject comes
    /// from its target ([`Subjects::ingest`]), `Nats-Msg-Id` from its id.
    /// Once this returns `Ok` the stream has stored it, so the client may be
    /// acked; a retry with the same message is stored once.
    pub async fn publish_accepted(
        &self,
        message: &MessageAccepted,
    ) -> Result<jetstream::publish::PublishAck, BusError> {
        let subject = self.subjects.ingest(&message.target);
        self.publish_durable(subject, message.id.as_str(), message).await
    }

    /// Sends already-encoded `payload` to a stream with `Nats-Msg-Id` =
    /// `msg_id` without waiting for the stream's acknowledgement: the
    /// returned future resolves to it. Publishes sent one after another on
    /// one `Bus` reach the stream in order, so a caller can keep many in
    /// flight and await their acks in order (the presence reporter does).
    ///
    /// `span` is the publish's producer span (its context goes into the
    /// headers; `Span::none()`: none): the caller opens it, and may keep it
    /// open until the ack.
    pub async fn publish_durable_pipelined(
        &self,
        span: &tracing::Span,
        subject: String,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<jetstream::context::PublishAckFuture, BusError> {
        let mut headers = HeaderMap::new();
        sb_telemetry::nats::inject_span(span, &mut headers);
        headers.insert(HEADER_MSG_ID, msg_id);
        self.jetstream
            .publish_with_headers(subject.clone(), headers, payload)
            .instrument(span.clone())
            .await
            .map_err(|source| BusError::JetStreamPublish { subject, source })
    }

    /// Sends `query` on `subject` and decodes the [`Reply`]; an error reply
    /// becomes [`BusError::Remote`].
    pub async fn request<Q: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        subject: String,
        query: &Q,
    ) -> Result<R, BusError> {
        let bytes = Bytes::from(serde_json::to_vec(query)?);
        let span = sb_telemetry::nats::producer_span(&subject, None);
        let mut headers = HeaderMap::new();
        sb_telemetry::nats::inject_span(&span, &mut headers);
        let request = async_nats::Request::new().payload(bytes).headers(headers).timeout(Some(self.request_timeout));
        let message = self
            .client
            .send_request(subject.clone(), request)
            .instrument(span)
            .await
            .map_err(|source| BusError::Request { subject: subject.clone(), source })?;
        let reply: Reply<R> = decode(&subject, &message.payload)?;
        reply.into_result().map_err(|source| BusError::Remote { subject, source })
    }

    /// Sends `query` on `subject`, which several responders may answer
    /// (e.g. every edge on `control.edges`), and collects their [`Reply`]s
    /// until `expected` arrived or `window` passed, whichever is first
    /// (`expected` 0: not known, the whole window). An answer that does not
    /// decode is skipped (logged).
    pub async fn request_all<Q: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        subject: String,
        query: &Q,
        expected: usize,
        window: Duration,
    ) -> Result<Vec<Reply<R>>, BusError> {
        let bytes = Bytes::from(serde_json::to_vec(query)?);
        let inbox = self.client.new_inbox();
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|source| BusError::Subscribe { subject: inbox.clone(), source })?;
        let span = sb_telemetry::nats::producer_span(&subject, None);
        let mut headers = HeaderMap::new();
        sb_telemetry::nats::inject_span(&span, &mut headers);
        self.client
            .publish_with_reply_and_headers(subject.clone(), inbox, headers, bytes)
            .instrument(span)
            .await
            .map_err(|source| BusError::Publish { subject: subject.clone(), source })?;
        let mut replies = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while expected == 0 || replies.len() < expected {
            match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut answers)).await {
                Ok(Some(message)) => match decode::<Reply<R>>(&subject, &message.payload) {
                    Ok(reply) => replies.push(reply),
                    Err(error) => tracing::warn!(%error, "skipping an answer that does not decode"),
                },
                Ok(None) | Err(_) => break,
            }
        }
        Ok(replies)
    }

    /// Answers a request whose reply subject is `reply_to`.
    pub async fn respond<T: Serialize>(&self, reply_to: async_nats::Subject, reply: &Reply<T>) -> Result<(), BusError> {
        let bytes = Bytes::from(serde_json::to_vec(reply)?);
        self.client
            .publish(reply_to.clone(), bytes)
            .await
            .map_err(|source| BusError::Publish { subject: reply_to.to_string(), source })
    }

    /// Creates the ingest stream (`<PREFIX>_MSG`) unless it exists: file
    /// storage, work-queue retention (a message leaves once messaging acked
    /// it), a 2-minute de-duplication window, and new messages refused rather
    /// than old ones dropped if a limit is ever reached.
    pub async fn ensure_ingest_stream(&self, replicas: usize) -> Result<stream::Stream, BusError> {
        let name = self.subjects.ingest_stream();
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![self.subjects.ingest_all_subjects()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                discard: stream::DiscardPolicy::New,
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: replicas.max(1),
                description: Some("Switchboard: accepted messages until messaging has stored them".to_owned()),
                ..Default::default()
            })
            .await
            .map_err(|source| BusError::Stream { stream: name, source })
    }

    /// Creates the login-failure stream (`<PREFIX>_LOGIN`) unless it exists:
    /// one message per subject (the email's current record), each kept for
    /// `window` after its last write, file storage.
    pub async fn ensure_login_stream(&self, replicas: usize, window: Duration) -> Result<stream::Stream, BusError> {
        let name = self.subjects.login_failures_stream();
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![self.subjects.login_failures_all()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_messages_per_subject: 1,
                max_age: window,
                num_replicas: replicas.max(1),
                description: Some("Switchboard: failed logins per email hash, shared by auth replicas".to_owned()),
                ..Default::default()
            })
            .await
            .map_err(|source| BusError::Stream { stream: name, source })
    }

    /// Creates the presence event stream (`<PREFIX>_PRESENCE`) unless it
    /// exists: file storage, kept for `max_age`, 2-minute de-duplication.
    pub async fn ensure_presence_stream(&self, replicas: usize, max_age: Duration) -> Result<stream::Stream, BusError> {
        let name = self.subjects.presence_stream();
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![self.subjects.presence_events_all()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_age,
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: replicas.max(1),
                description: Some("Switchboard: connects, disconnects, joins and leaves reported by edges".to_owned()),
                ..Default::default()
            })
            .await
            .map_err(|source| BusError::Stream { stream: name, source })
    }

    /// Reads the presence stream's events in order from stream sequence
    /// `start` (1 or 0: from the first), with an ordered consumer (no acks,
    /// nothing stored on the server). Presence replicas read it all;
    /// messaging's locate cache from the end.
    pub async fn presence_events_from(
        &self,
        start: u64,
    ) -> Result<jetstream::consumer::pull::Ordered, async_nats::Error> {
        use jetstream::consumer::DeliverPolicy;
        let stream = self.jetstream.get_stream(self.subjects.presence_stream()).await?;
        let deliver_policy =
            if start <= 1 { DeliverPolicy::All } else { DeliverPolicy::ByStartSequence { start_sequence: start } };
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy,
                filter_subject: self.subjects.presence_events_all(),
                ..Default::default()
            })
            .await?;
        Ok(consumer.messages().await?)
    }

    /// The sequence of the presence stream's last event (0 when empty).
    pub async fn presence_stream_last_seq(&self) -> Result<u64, async_nats::Error> {
        let stream = self.jetstream.get_stream(self.subjects.presence_stream()).await?;
        Ok(stream.get_info().await?.state.last_sequence)
    }

    /// Flushes what the client buffered, then drains (used at shutdown).
    /// Each step waits at most [`CLOSE_STEP_TIMEOUT`]: with NATS unreachable
    /// the client would otherwise wait for a reconnect forever.
    pub async fn close(&self) {
        match tokio::time::timeout(CLOSE_STEP_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "flush NATS at shutdown"),
            Err(_) => {
                tracing::warn!(
                    timeout = ?CLOSE_STEP_TIMEOUT,
                    "NATS is unreachable at shutdown; what was not yet sent is dropped (unacked work is redelivered)"
                );
                return;
            }
        }
        match tokio::time::timeout(CLOSE_STEP_TIMEOUT, self.client.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "drain NATS at shutdown"),
            Err(_) => tracing::warn!(timeout = ?CLOSE_STEP_TIMEOUT, "draining NATS at shutdown took too long"),
        }
    }
}

/// The client options for `servers`: credentials, TLS and our timeouts.
async fn connect_options(servers: &NatsServers, name: &str) -> Result<async_nats::ConnectOptions, BusError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS, reconnecting"),
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::debug!(event = %other, "NATS client event"),
            }
        });
    let file_error = |source: std::io::Error| BusError::CredentialsFile { setting: servers.auth.setting(), source };
    options = match &servers.auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password, .. } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        NatsAuth::Token { token, .. } => options.token(token.expose().to_owned()),
        NatsAuth::NKeySeedFile(path) => {
            let seed = tokio::fs::read_to_string(path).await.map_err(file_error)?;
            options.nkey(seed.trim().to_owned())
        }
        NatsAuth::CredsFile(path) => options.credentials_file(path).await.map_err(file_error)?,
    };
    if let Some(ca) = &servers.tls.ca_file {
        // async-nats reads the file only while connecting; a missing one
        // should name its setting now rather than fail as a handshake.
        tokio::fs::metadata(ca).await.map_err(|source| BusError::CredentialsFile {
            setting: format!("NATS_TLS_CA_FILE={}", ca.display()),
            source,
        })?;
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &servers.tls.client_cert {
        for (setting, path) in [("NATS_TLS_CERT_FILE", cert), ("NATS_TLS_KEY_FILE", key)] {
            tokio::fs::metadata(path).await.map_err(|source| BusError::CredentialsFile {
                setting: format!("{setting}={}", path.display()),
                source,
            })?;
        }
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options.require_tls(servers.tls.required))
}

/// Turns a failed first connection into an error that names what to fix:
/// the credential setting when NATS refused it, the TLS settings otherwise
/// when TLS is in use.
fn connect_error(servers: &NatsServers, source: async_nats::ConnectError) -> BusError {
    let url = servers.display_urls();
    match source.kind() {
        async_nats::ConnectErrorKind::AuthorizationViolation | async_nats::ConnectErrorKind::Authentication => {
            BusError::Refused { url, setting: servers.auth.setting(), source }
        }
        _ => {
            let tls = if servers.tls.required || source.kind() == async_nats::ConnectErrorKind::Tls {
                format!(" with TLS ({})", servers.tls.settings())
            } else {
                String::new()
            };
            BusError::Connect { url, tls, source }
        }
    }
}

/// The `nats` readiness check: `ok` while the client is connected,
/// `disconnected` while it is reconnecting (it keeps trying by itself).
pub fn connection_check(client: &async_nats::Client) -> sb_service::Check {
    match client.connection_state() {
        async_nats::connection::State::Connected => sb_service::Check::Ok,
        async_nats::connection::State::Pending => sb_service::Check::failing("connecting"),
        async_nats::connection::State::Disconnected => sb_service::Check::failing("disconnected"),
    }
}

/// Decodes a JSON payload that arrived on `subject`.
pub fn decode<T: DeserializeOwned>(subject: &str, payload: &[u8]) -> Result<T, BusError> {
    serde_json::from_slice(payload).map_err(|source| BusError::Decode { subject: subject.to_owned(), source })
}
