//! What every command runs with: the resolved context, the caller's token and
//! the output format, plus gRPC channels to the context's services.

use std::io::{BufRead as _, IsTerminal as _};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::context::{Context, Store};
use crate::error::{CliError, Service, Target};
use crate::output::Format;
use crate::trace::TraceContext;

/// How long a connection attempt may take before the service counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take (`users seed` of 100000 users takes about 2 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The resolved settings of one invocation.
pub struct Client {
    /// How to print results.
    pub format: Format,
    /// The context's name.
    pub context_name: String,
    /// Its addresses.
    pub context: Context,
    /// The configuration directory.
    pub store: Store,
    /// `--token` / `SWITCHBOARD_TOKEN`, which wins over the stored one.
    pub token_override: Option<String>,
    /// The trace context every request carries (`--trace`, `TRACEPARENT`).
    pub trace: Option<TraceContext>,
}

impl Client {
    /// Where `service` is, for errors.
    pub fn target(&self, service: Service) -> Target {
        let address = match service {
            Service::Auth => &self.context.auth,
            Service::Presence => &self.context.presence,
            Service::Messaging => &self.context.messaging,
        };
        Target { service, address: address.clone(), context: self.context_name.clone() }
    }

    /// A channel to `service` that connects on first use.
    pub fn channel(&self, service: Service) -> Result<Channel, CliError> {
        let target = self.target(service);
        let endpoint = Endpoint::from_shared(target.address.clone()).map_err(|_| {
            CliError::Config(format!(
                "context {} has an invalid {} address {:?}",
                self.context_name,
                service.name(),
                target.address
            ))
        })?;
        Ok(endpoint.connect_timeout(CONNECT_TIMEOUT).timeout(CALL_TIMEOUT).connect_lazy())
    }

    /// The caller's token: `--token` / `SWITCHBOARD_TOKEN`, else the one `login` stored.
    pub fn token(&self) -> Result<String, CliError> {
        if let Some(token) = self.token_override.as_deref().map(str::trim).filter(|token| !token.is_empty()) {
            return Ok(sb_authn::strip_bearer(token).to_owned());
        }
        self.store
            .token(&self.context_name)?
            .ok_or_else(|| CliError::NotLoggedIn { context: self.context_name.clone() })
    }

    /// `message` as a request, with the invocation's trace context.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(trace) = &self.trace {
            trace.apply(&mut request);
        }
        request
    }

    /// `message` with `authorization: Bearer <token>` (and the trace context).
    pub fn authed<T>(&self, message: T) -> Result<tonic::Request<T>, CliError> {
        let token = self.token()?;
        let mut request = self.request(message);
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| CliError::Usage("the token contains characters a header cannot carry".to_owned()))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// A password: the first line of stdin with `--password-stdin`, else a prompt
/// on the terminal (no echo). Without either there is no way to ask.
pub fn read_password(from_stdin: bool, prompt: &str) -> Result<String, CliError> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|error| CliError::Usage(format!("read the password from stdin: {error}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).map_err(|error| CliError::Usage(format!("read the password: {error}")))?
    } else {
        return Err(CliError::Usage("no password: pipe it in with --password-stdin".to_owned()));
    };
    if password.is_empty() {
        return Err(CliError::Usage("the password is empty".to_owned()));
    }
    Ok(password)
}
