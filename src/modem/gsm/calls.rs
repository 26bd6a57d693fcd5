//! Incoming calls: `RING` and `+CLIP` become an `offer` (with the caller's
//! number when it comes in time), the end of ringing an `end`, and hanging
//! up (automatically, or on the API's command) a `reject`. A rejected
//! caller gets the instance's `msgCall` text, queued in the outbox in the
//! same commit as the `reject` event.

use chrono::Utc;
use tokio::time::Instant;

use super::Gsm;
use crate::{
    event::data::{CallData, CallStatus, Payload},
    modem::{Command, DriverError},
    store::Job,
};

/// A call that is ringing.
pub(super) struct Call {
    pub(super) id: String,
    pub(super) from: Option<String>,
    pub(super) offered: bool,
    pub(super) first_ring: Instant,
    pub(super) last_ring: Instant,
}

impl Gsm<'_> {
    pub(super) async fn ring(&mut self, number: Option<String>) {
        let now = Instant::now();
        let call = self.call.get_or_insert_with(|| Call {
            id: uuid::Uuid::now_v7().to_string(),
            from: None,
            offered: false,
            first_ring: now,
            last_ring: now,
        });
        call.last_ring = now;
        if let Some(number) = number {
            call.from = Some(number);
        }
        if !call.offered && call.from.is_some() {
            self.offer().await;
        }
    }

    pub(super) async fn offer(&mut self) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        call.offered = true;
        let (id, from) = (call.id.clone(), call.from.clone());
        self.call_event(&id, from, CallStatus::Offer).await;
        if self.options.auto_reject_calls || self.ctx.settings().reject_call {
            if let Err(err) = self.hang_up().await {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not reject a call");
            }
        }
    }

    /// Hangs up the ringing call; returns its id.
    async fn hang_up(&mut self) -> Result<String, String> {
        let Some(call) = self.call.take() else {
            return Err("no call is ringing".into());
        };
        let hung = match self.cmd("AT+CHUP", "").await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => match self.cmd("ATH", "").await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!("the modem refused to hang up: {err}")),
                Err(err) => Err(err.to_string()),
            },
            Err(err) => Err(err.to_string()),
        };
        match hung {
            Ok(()) => {
                let reply = self
                    .ctx
                    .call_reply(&self.own_number(), call.from.as_deref());
                let queued = reply.is_some();
                self.commit_call_event(&call.id, call.from.clone(), CallStatus::Reject, reply)
                    .await;
                if queued {
                    self.ctx.wake_outbox();
                }
                Ok(call.id)
            }
            Err(err) => {
                self.call = Some(call);
                Err(err)
            }
        }
    }

    pub(super) async fn call_event(&self, id: &str, from: Option<String>, status: CallStatus) {
        self.commit_call_event(id, from, status, None).await;
    }

    /// Commits a call event, with the job queueing a text to the caller
    /// when there is one (the same commit: the reject and its text).
    async fn commit_call_event(
        &self,
        id: &str,
        from: Option<String>,
        status: CallStatus,
        with: Option<Job>,
    ) {
        let event = CallData {
            id: id.to_owned(),
            from: from.unwrap_or_else(|| "unknown".into()),
            status,
            is_video: false,
            timestamp: Utc::now().timestamp(),
        };
        let mut job = Job {
            events: vec![event.into_event(&self.ctx.instance)],
            changes: Vec::new(),
            fence: None,
        };
        if let Some(with) = with {
            job.events.extend(with.events);
            job.changes.extend(with.changes);
        }
        if let Err(err) = self.ctx.append(job).await {
            tracing::warn!(instance = %self.ctx.instance, error = %err, "could not record a call event");
        }
    }

    pub(super) async fn command(&mut self, command: Command) -> Result<(), DriverError> {
        match command {
            Command::RejectCall { call_id, reply } => {
                let matches = match (&self.call, &call_id) {
                    (Some(call), Some(id)) => &call.id == id,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let answer = if matches {
                    self.hang_up().await
                } else {
                    Err(match call_id {
                        Some(id) => format!("call '{id}' is not ringing"),
                        None => "no call is ringing".into(),
                    })
                };
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            Command::Ussd {
                request,
                timeout,
                reply,
            } => self.ussd(request, timeout, reply).await?,
        }
        Ok(())
    }
}
