//! Per-instance settings (`settings/set`, `settings/find`): what an
//! instance does on its own (reject calls, answer callers by SMS) and how
//! it reads numbers. A change names only what it changes; the rest stays.
//! Committed first, then handed to the registry and the running driver.

use super::{Service, ServiceError};
use crate::{
    domain::{InstanceName, InstanceSettings, Region, Throttle},
    store::{Change, Job},
};

/// What `settings/set` changes; `None` leaves a setting as it is.
#[derive(Debug, Default)]
pub struct SettingsChange {
    pub reject_call: Option<bool>,
    /// `Some(None)` removes the text.
    pub msg_call: Option<Option<String>>,
    /// `Some(None)` removes the region.
    pub default_region: Option<Option<String>>,
    pub allow_short_codes: Option<bool>,
    /// `Some(None)` removes every limit.
    pub throttle: Option<Option<Throttle>>,
}

impl Service {
    pub async fn set_settings(
        &self,
        name: &InstanceName,
        change: SettingsChange,
    ) -> Result<InstanceSettings, ServiceError> {
        // One change at a time, so two requests changing different settings
        // do not undo each other.
        let _one_at_a_time = self.settings_lock.lock().await;
        let mut settings = self.registry.settings(name)?;
        if let Some(reject) = change.reject_call {
            settings.reject_call = reject;
        }
        if let Some(text) = change.msg_call {
            settings.msg_call = text.filter(|t| !t.trim().is_empty());
        }
        if let Some(region) = change.default_region {
            settings.default_region = region
                .map(|raw| raw.parse::<Region>())
                .transpose()
                .map_err(|e| ServiceError::Invalid(format!("'defaultRegion': {e}")))?;
        }
        if let Some(allow) = change.allow_short_codes {
            settings.allow_short_codes = allow;
        }
        if let Some(throttle) = change.throttle {
            settings.throttle = throttle.unwrap_or_default();
        }
        settings.check().map_err(ServiceError::Invalid)?;
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::SetInstanceSettings {
                    name: name.clone(),
                    settings: settings.clone(),
                }],
                fence: None,
            })
            .await?;
        self.registry.set_settings(name, settings.clone());
        Ok(settings)
    }

    pub fn settings(&self, name: &InstanceName) -> Result<InstanceSettings, ServiceError> {
        Ok(self.registry.settings(name)?)
    }
}
