//! Control events the edge acts on: access changes from auth
//! (`<p>.control.access`). Kicks and snapshots on the edge's command
//! subjects are answered by the presence reporter through
//! [`crate::presence::EdgeSessions`].

use std::sync::Arc;

use futures_util::StreamExt as _;
use sb_events::control::AccessChanged;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::ctx::EdgeCtx;
use crate::presence::disconnect_refused;

/// Subscribes to access changes; returns once the subscription is in place
/// and spawns the loop that applies them until `stop`.
pub(crate) async fn watch_access(ctx: Arc<EdgeCtx>, stop: CancellationToken) -> Result<(), async_nats::SubscribeError> {
    let subject = ctx.bus.subjects.control_access();
    let mut subscriber = ctx.bus.client.subscribe(subject).await?;
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = subscriber.next() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            let span =
                sb_telemetry::nats::consumer_span("edge.access_changed", &message.subject, message.headers.as_ref());
            async {
                let change: AccessChanged = match sb_events::bus::decode(&message.subject, &message.payload) {
                    Ok(change) => change,
                    Err(error) => {
                        tracing::warn!(%error, "ignoring an access change that does not decode");
                        return;
                    }
                };
                apply(&ctx, &change);
            }
            .instrument(span)
            .await;
        }
    });
    Ok(())
}

/// Forgets cached verifications of the user and disconnects its sockets
/// whose token the change invalidates.
pub(crate) fn apply(ctx: &EdgeCtx, change: &AccessChanged) {
    ctx.auth.invalidate_user(&change.user_id);
    let refused = ctx.registry.access_changed(change);
    if !refused.is_empty() {
        tracing::info!(user = %change.user_id, sockets = refused.len(), disabled = change.disabled, "disconnecting sockets after an access change");
    }
    disconnect_refused(&ctx.io, &ctx.metrics, &ctx.tracker, &refused);
}
