//! Crashing a service in-process, as `kill -9` would.
//!
//! A service under test runs on its own Tokio runtime; [`CrashableRuntime::crash`]
//! shuts that runtime down without waiting: every task is dropped at its next
//! await point, its sockets close, in-flight database transactions roll back
//! and nothing runs a graceful shutdown, which is what NATS, PostgreSQL and
//! socket clients see when a process is killed.

use std::future::Future;

/// A multi-threaded runtime that can be killed.
pub struct CrashableRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl CrashableRuntime {
    /// A new runtime with 2 worker threads.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(name).enable_all().build()?;
        Ok(Self { runtime: Some(runtime) })
    }

    /// Runs `future` on this runtime and returns its output to the caller's runtime.
    pub async fn run<F>(&self, future: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.as_ref().ok_or_else(|| anyhow::anyhow!("runtime crashed"))?;
        Ok(runtime.spawn(future).await?)
    }

    /// Spawns `future` on this runtime and lets it run until the crash.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if let Some(runtime) = self.runtime.as_ref() {
            runtime.spawn(future);
        }
    }

    /// Kills everything running on this runtime, without any graceful step.
    pub fn crash(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for CrashableRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
