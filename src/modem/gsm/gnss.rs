//! GNSS: polling the modem's receiver for a position fix (SIMCom
//! `AT+CGPSINFO` or Quectel `AT+QGPSLOC`) and committing it as a `location`
//! event. The receiver is switched on in `init`.

use chrono::Utc;

use super::Gsm;
use crate::{
    domain::GnssVendor,
    event::data::{LocationData, Payload},
    modem::{at::parse, DriverError},
    store::Job,
};

impl Gsm<'_> {
    pub(super) async fn poll_gnss(&mut self) -> Result<(), DriverError> {
        let Some(gnss) = &self.options.gnss else {
            return Ok(());
        };
        let fix = match gnss.vendor {
            GnssVendor::Simcom => self
                .cmd("AT+CGPSINFO", "+CGPSINFO:")
                .await?
                .ok()
                .and_then(|r| r.info("+CGPSINFO:").and_then(parse::cgpsinfo)),
            // "+CME ERROR: 516" is Quectel's "no fix yet": not an error.
            GnssVendor::Quectel => self
                .cmd("AT+QGPSLOC=2", "+QGPSLOC:")
                .await?
                .ok()
                .and_then(|r| r.info("+QGPSLOC:").and_then(parse::qgpsloc)),
        };
        let Some(fix) = fix else {
            return Ok(());
        };
        let event = LocationData {
            latitude: fix.latitude,
            longitude: fix.longitude,
            altitude: fix.altitude,
            speed: fix.speed,
            course: fix.course,
            satellites: fix.satellites,
            timestamp: fix.timestamp.unwrap_or_else(|| Utc::now().timestamp()),
        };
        if let Err(err) = self
            .ctx
            .append(Job {
                events: vec![event.into_event(&self.ctx.instance)],
                changes: Vec::new(),
                fence: None,
            })
            .await
        {
            tracing::warn!(instance = %self.ctx.instance, error = %err, "could not record a position");
        }
        Ok(())
    }
}
