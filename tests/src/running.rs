//! [`RunningService`]: a service's `App::run` spawned on the test's runtime
//! with a cancellation token as its shutdown future. [`RunningService::stop`]
//! stops it gracefully and reports how it ended; dropping it cancels the
//! token, so a test that fails midway still shuts the service down.

use std::future::Future;

use anyhow::Context as _;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// One service running on the test's runtime until stopped or dropped.
pub struct RunningService<E> {
    name: &'static str,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), E>>>,
}

impl<E> RunningService<E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    /// Spawns `run(shutdown)`, e.g. `|shutdown| app.run(shutdown)`; `name`
    /// names the service in errors.
    pub fn spawn<F>(name: &'static str, run: impl FnOnce(WaitForCancellationFutureOwned) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(shutdown.clone().cancelled_owned()));
        Self { name, shutdown, task: Some(task) }
    }

    /// Starts the graceful stop without waiting for it (a test can watch
    /// the service while it stops, then call [`Self::stop`]).
    pub fn begin_stop(&self) {
        self.shutdown.cancel();
    }

    /// Stops the service gracefully and waits until it has drained.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let name = self.name;
            task.await
                .with_context(|| format!("{name} task panicked"))?
                .with_context(|| format!("{name} stopped with an error"))?;
        }
        Ok(())
    }
}

impl<E> Drop for RunningService<E> {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
