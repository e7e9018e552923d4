//! [`Health`]: whether a service can do its work, and if not, what is missing.
//!
//! A service names its checks: some it sets as they change
//! ([`Health::set`], e.g. `replay` → `in progress` until presence rebuilt its
//! state), some are probes read each time someone asks ([`Health::add_probe`],
//! e.g. `nats` from the client's connection state). The service is ready when
//! every check is `ok` and it is not stopping. `/readyz` answers with the
//! whole [`Report`] as JSON; the gRPC health service answers `SERVING` /
//! `NOT_SERVING` for the server as a whole (`""`, what a Kubernetes gRPC
//! probe without a service name asks) and for each named service, kept in
//! step by the runner.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// The state of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Fine.
    Ok,
    /// Not yet: something is still starting (`in progress`).
    Pending(Cow<'static, str>),
    /// Broken: a dependency is unreachable (`unavailable`, `disconnected`).
    Failing(Cow<'static, str>),
}

impl Check {
    /// Not ready yet, for `why` (e.g. `in progress`).
    pub fn pending(why: impl Into<Cow<'static, str>>) -> Self {
        Self::Pending(why.into())
    }

    /// Broken, for `why` (e.g. `unavailable`).
    pub fn failing(why: impl Into<Cow<'static, str>>) -> Self {
        Self::Failing(why.into())
    }

    /// Whether the check passes.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    /// How the check reads in `/readyz`: `ok` or the reason.
    pub fn text(&self) -> &str {
        match self {
            Self::Ok => "ok",
            Self::Pending(why) | Self::Failing(why) => why,
        }
    }
}

type Probe = Box<dyn Fn() -> Check + Send + Sync>;

struct Inner {
    checks: Mutex<BTreeMap<&'static str, Check>>,
    probes: Mutex<Vec<(&'static str, Probe)>>,
    stopping: AtomicBool,
    changed: Notify,
}

/// The readiness of one service; cheap to clone and share.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("report", &self.report()).finish()
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// What `/readyz` says: ready or not, and every check by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every check passes and the service is not stopping.
    pub ready: bool,
    /// Each check's text (`ok` or why not), by name; `shutdown` once stopping.
    pub checks: BTreeMap<&'static str, String>,
}

impl Report {
    /// The JSON body: `{"status":"ready"|"not ready","checks":{"nats":"ok",…}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let checks: serde_json::Map<String, serde_json::Value> =
            self.checks.iter().map(|(name, text)| ((*name).to_owned(), text.clone().into())).collect();
        serde_json::json!({
            "status": if self.ready { "ready" } else { "not ready" },
            "checks": checks,
        })
    }
}

impl Health {
    /// Health with no checks yet: ready until a check says otherwise.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                checks: Mutex::new(BTreeMap::new()),
                probes: Mutex::new(Vec::new()),
                stopping: AtomicBool::new(false),
                changed: Notify::new(),
            }),
        }
    }

    /// Sets the check `name`.
    pub fn set(&self, name: &'static str, check: Check) {
        let previous = self.inner.checks.lock().insert(name, check.clone());
        if previous.as_ref() != Some(&check) {
            self.inner.changed.notify_waiters();
        }
    }

    /// Adds a check read each time readiness is asked for; `probe` must be
    /// cheap (it runs on every `/readyz` and once a second for gRPC health).
    pub fn add_probe(&self, name: &'static str, probe: impl Fn() -> Check + Send + Sync + 'static) {
        self.inner.probes.lock().push((name, Box::new(probe)));
        self.inner.changed.notify_waiters();
    }

    /// Marks the service as stopping: never ready again.
    pub fn set_stopping(&self) {
        if !self.inner.stopping.swap(true, Ordering::AcqRel) {
            self.inner.changed.notify_waiters();
        }
    }

    /// Whether a stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    /// Every check now.
    pub fn report(&self) -> Report {
        let mut checks: BTreeMap<&'static str, String> =
            self.inner.checks.lock().iter().map(|(name, check)| (*name, check.text().to_owned())).collect();
        let mut ready = checks.values().all(|text| text == "ok");
        for (name, probe) in self.inner.probes.lock().iter() {
            let check = probe();
            ready &= check.is_ok();
            checks.insert(name, check.text().to_owned());
        }
        if self.is_stopping() {
            ready = false;
            checks.insert("shutdown", "in progress".to_owned());
        }
        Report { ready, checks }
    }

    /// Whether the service is ready now.
    pub fn is_ready(&self) -> bool {
        self.report().ready
    }

    /// Completes at the next change made with [`Self::set`],
    /// [`Self::add_probe`] or [`Self::set_stopping`] (probes change without
    /// telling; readers poll them too).
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes() {
        let health = Health::new();
        assert!(health.is_ready());
        health.set("replay", Check::pending("in progress"));
        let report = health.report();
        assert!(!report.ready);
        assert_eq!(report.to_json(), serde_json::json!({"status": "not ready", "checks": {"replay": "in progress"}}));
        health.set("replay", Check::Ok);
        let nats_up = Arc::new(AtomicBool::new(false));
        let probe_state = nats_up.clone();
        health.add_probe("nats", move || {
            if probe_state.load(Ordering::Relaxed) { Check::Ok } else { Check::failing("disconnected") }
        });
        assert_eq!(health.report().checks["nats"], "disconnected");
        nats_up.store(true, Ordering::Relaxed);
        assert!(health.is_ready());
        health.set_stopping();
        let report = health.report();
        assert!(!report.ready);
        assert_eq!(report.checks["shutdown"], "in progress");
    }
}
