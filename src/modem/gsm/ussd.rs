//! USSD sessions: `AT+CUSD=1,"<code>",15` out, the network's `+CUSD`
//! answer back as a `ussd` event, a menu answered with `AT+CUSD=1,"<n>"`,
//! closed with `AT+CUSD=2`.
//!
//! The driver does not wait in place for the network, which can take
//! seconds: the request is sent, the session remembers who waits, and the
//! `+CUSD` URC (or the deadline, checked by housekeeping) answers them, so
//! SMS traffic goes on meanwhile.

use std::time::Duration;

use tokio::time::Instant;

use super::Gsm;
use crate::{
    event::data::{Payload, UssdStatus},
    modem::{
        pdu,
        ussd::{self, UssdError, UssdReply, UssdRequest},
        DriverError,
    },
    store::Job,
};

/// The instance's USSD session.
pub(super) struct Session {
    /// Names the session in its events.
    id: String,
    /// What was sent last (for the event of its answer).
    request: Option<String>,
    /// Who waits for the network's answer, and until when.
    waiting: Option<(UssdReply, Instant, Duration)>,
}

impl Gsm<'_> {
    pub(super) async fn ussd(
        &mut self,
        request: UssdRequest,
        timeout: Duration,
        reply: UssdReply,
    ) -> Result<(), DriverError> {
        if self.ussd.as_ref().is_some_and(|s| s.waiting.is_some()) {
            let _ = reply.send(Err(UssdError::Conflict(
                "a USSD request is still waiting for the network's answer".into(),
            )));
            return Ok(());
        }
        let (command, id) = match &request {
            UssdRequest::Code(code) => {
                if self.ussd.take().is_some() {
                    // A new code ends the menu that was open.
                    self.cmd("AT+CUSD=2", "").await?.ok();
                }
                (
                    format!("AT+CUSD=1,\"{code}\",15"),
                    uuid::Uuid::now_v7().to_string(),
                )
            }
            UssdRequest::Reply(text) => match &self.ussd {
                Some(session) => (format!("AT+CUSD=1,\"{text}\",15"), session.id.clone()),
                None => {
                    let _ = reply.send(Err(UssdError::NoSession(
                        "no USSD menu is open: start a session with a code".into(),
                    )));
                    return Ok(());
                }
            },
            UssdRequest::Cancel => {
                let Some(session) = self.ussd.take() else {
                    let _ = reply.send(Err(UssdError::NoSession("no USSD session is open".into())));
                    return Ok(());
                };
                self.cmd("AT+CUSD=2", "").await?.ok();
                let answer = self
                    .ussd_event(&session.id, None, UssdStatus::Cancelled, None)
                    .await;
                let _ = reply.send(answer);
                return Ok(());
            }
        };
        match self.cmd(&command, "").await? {
            Ok(_) => {
                self.ussd = Some(Session {
                    id,
                    request: request.sent(),
                    waiting: Some((reply, Instant::now() + timeout, timeout)),
                });
            }
            Err(err) => {
                self.ussd = None;
                let _ = reply.send(Err(UssdError::Refused(err.to_string())));
            }
        }
        Ok(())
    }

    /// The network's `+CUSD`: the answer someone waits for, or something
    /// the network sent unasked (which opens a session when it asks back).
    pub(super) async fn ussd_answer(&mut self, m: u8, text: Option<String>, dcs: Option<u8>) {
        let Some(status) = UssdStatus::from_cusd(m) else {
            return;
        };
        let text = text.map(|t| pdu::decode_ussd(&t, dcs));
        let (id, request, waiting) = match self.ussd.take() {
            Some(session) => (session.id, session.request, session.waiting),
            None => (uuid::Uuid::now_v7().to_string(), None, None),
        };
        let answer = self.ussd_event(&id, request, status, text).await;
        if status.is_open() {
            self.ussd = Some(Session {
                id,
                request: None,
                waiting: None,
            });
        }
        match waiting {
            Some((reply, ..)) => {
                let _ = reply.send(answer);
            }
            None => {
                tracing::info!(instance = %self.ctx.instance, ?status, "USSD from the network, unasked")
            }
        }
    }

    /// Closes a session whose answer is overdue.
    pub(super) async fn ussd_deadline(&mut self, now: Instant) -> Result<(), DriverError> {
        let overdue = self
            .ussd
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .is_some_and(|(_, deadline, _)| *deadline <= now);
        if !overdue {
            return Ok(());
        }
        let Some(Session {
            id,
            request,
            waiting: Some((reply, _, timeout)),
        }) = self.ussd.take()
        else {
            return Ok(());
        };
        self.cmd("AT+CUSD=2", "").await?.ok();
        let recorded = self
            .ussd_event(&id, request, UssdStatus::Timeout, None)
            .await;
        let _ = reply.send(match recorded {
            Ok(_) => Err(UssdError::Timeout(timeout)),
            Err(err) => Err(err),
        });
        Ok(())
    }

    /// Commits an exchange's `ussd` event; its data is the answer.
    async fn ussd_event(
        &self,
        id: &str,
        request: Option<String>,
        status: UssdStatus,
        text: Option<String>,
    ) -> Result<ussd::UssdAnswer, UssdError> {
        let data = ussd::event(id, request, status, text);
        let job = Job {
            events: vec![data.clone().into_event(&self.ctx.instance)],
            changes: Vec::new(),
            fence: None,
        };
        match self.ctx.append(job).await {
            Ok(()) => Ok(data),
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not record a USSD answer");
                Err(UssdError::from(err))
            }
        }
    }
}
