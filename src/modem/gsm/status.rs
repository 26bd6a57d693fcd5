//! Link status: signal, registration (circuit-switched and EPS), operator
//! and storage fill, polled on a timer or pushed by registration URCs, and
//! committed as a `connection` event whenever they change.

use tokio::time::Instant;

use super::Gsm;
use crate::{
    event::data::Me,
    modem::{at::parse, DriverError},
};

impl Gsm<'_> {
    /// Reads signal, registration, operator and storage, and reports what
    /// changed as a `connection` event.
    pub(super) async fn poll_status(&mut self) -> Result<(), DriverError> {
        if let Ok(response) = self.cmd("AT+CSQ", "+CSQ:").await? {
            self.info.signal = response.info("+CSQ:").and_then(parse::csq_dbm);
        }
        if let Ok(response) = self.cmd("AT+CREG?", "+CREG:").await? {
            self.cs_stat = response.info("+CREG:").and_then(parse::registration_stat);
        }
        if let Ok(response) = self.cmd("AT+CEREG?", "+CEREG:").await? {
            self.eps_stat = response.info("+CEREG:").and_then(parse::registration_stat);
        }
        if let Ok(response) = self.cmd("AT+COPS?", "+COPS:").await? {
            self.info.operator = response.info("+COPS:").and_then(parse::operator);
        }
        let mut reason = None;
        if let Ok(response) = self.cmd("AT+CPMS?", "+CPMS:").await? {
            let f = response
                .info("+CPMS:")
                .map(parse::fields)
                .unwrap_or_default();
            let used: Option<u32> = f.get(1).and_then(|v| v.parse().ok());
            let total: Option<u32> = f.get(2).and_then(|v| v.parse().ok());
            if let (Some(used), Some(total)) = (used, total) {
                let full = total > 0 && used >= total;
                if full && !self.storage_full {
                    tracing::warn!(instance = %self.ctx.instance, used, total, "modem SMS storage is full; draining it");
                    reason = Some(format!(
                        "modem SMS storage is full ({used}/{total}); draining it"
                    ));
                    // Empty it now rather than at the next poll.
                    self.rescan_due = Some(Instant::now());
                }
                self.storage_full = full;
            }
        }
        self.report(reason).await;
        Ok(())
    }

    /// Commits the link details when they changed (or a reason is given).
    pub(super) async fn report(&mut self, reason: Option<String>) {
        self.info.registration = self.registration();
        self.info.me = Some(Me {
            id: self.own_number(),
            name: self.ctx.instance.to_string(),
        });
        if reason.is_none() && self.reported.as_ref() == Some(&self.info) {
            return;
        }
        match self
            .ctx
            .report_connected_because(self.info.clone(), reason)
            .await
        {
            Ok(()) => self.reported = Some(self.info.clone()),
            // Reported again at the next change or poll.
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not record the modem status")
            }
        }
    }

    fn registration(&self) -> Option<String> {
        // The better of the two networks: registered beats searching.
        let rank = |stat: u8| match parse::registration_name(stat) {
            "home" => 4,
            "roaming" => 3,
            "searching" => 2,
            "denied" => 1,
            _ => 0,
        };
        [self.cs_stat, self.eps_stat]
            .into_iter()
            .flatten()
            .max_by_key(|s| rank(*s))
            .map(|s| parse::registration_name(s).to_owned())
    }
}
