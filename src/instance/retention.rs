//! Retention: deleting old events per instance, by age and by count.
//!
//! Each run asks the store to delete what an instance's settings (or the
//! server defaults) no longer keep, and tells the hub how far it deleted, so
//! a stream resuming from below that point gets `CURSOR_EXPIRED` instead of
//! a silent gap.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::Registry;
use crate::{config::RetentionSettings, domain::Retention, hub::Hub, store::Store};

/// Runs retention every `interval_secs` until shutdown.
pub async fn run(
    registry: Arc<Registry>,
    store: Store,
    hub: Arc<Hub>,
    defaults: RetentionSettings,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(defaults.interval_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => prune_all(&registry, &store, &hub, &defaults).await,
        }
    }
}

/// One pass over every instance.
pub async fn prune_all(
    registry: &Registry,
    store: &Store,
    hub: &Hub,
    defaults: &RetentionSettings,
) {
    let now_us = chrono::Utc::now().timestamp_micros();
    for (name, retention) in registry.retention_plan() {
        let age = retention.max_age_secs.unwrap_or(defaults.max_age_secs);
        let count = retention.max_events.unwrap_or(defaults.max_events);
        let older_than_us = Retention::cutoff_us(now_us, age);
        let keep = (count > 0).then(|| i64::try_from(count).unwrap_or(i64::MAX));
        if older_than_us.is_none() && keep.is_none() {
            continue;
        }
        match store.prune(&name, older_than_us, keep).await {
            Ok(Some(horizon)) => {
                hub.set_horizon(&name, horizon);
                tracing::debug!(instance = %name, horizon, "retention deleted old events");
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(instance = %name, error = %err, "retention failed; will retry");
            }
        }
    }
}
