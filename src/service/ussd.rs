//! USSD (`POST /ussd/{instance}`, `DELETE /ussd/{instance}`): a request
//! goes to the instance's driver as a command; the driver commits the
//! `ussd` event of the network's answer and then answers here.

use std::time::Duration;

use tokio::sync::oneshot;

use super::{Service, ServiceError};
use crate::{
    domain::InstanceName,
    modem::{
        ussd::{UssdAnswer, UssdError, UssdRequest},
        Command,
    },
};

/// How long the network gets to answer when the request does not say.
pub const DEFAULT_USSD_TIMEOUT: Duration = Duration::from_secs(30);
/// The bounds of a request's own deadline, in milliseconds.
pub const USSD_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=120_000;
/// Longest code or reply: USSD strings are at most 182 characters, and
/// nobody dials more than a few dozen.
const MAX_USSD_INPUT: usize = 40;
/// Beyond the request's deadline, how long the driver gets to say so (it
/// may be busy with a long send) before the request gives up itself.
const DRIVER_GRACE: Duration = Duration::from_secs(10);

/// Checks a code (`*100#`) or a menu reply (`1`), which go into an AT
/// command between quotes: only the characters a USSD string needs.
fn check_input(field: &str, value: &str, code: bool) -> Result<(), ServiceError> {
    let allowed = |c: char| {
        c.is_ascii_digit()
            || matches!(c, '*' | '#' | '+')
            || (!code && (c.is_ascii_alphabetic() || c == ' '))
    };
    let length = value.chars().count();
    if !(1..=MAX_USSD_INPUT).contains(&length) || !value.chars().all(allowed) {
        let what = if code {
            "digits, * , # and +"
        } else {
            "digits, letters, spaces, *, # and +"
        };
        return Err(ServiceError::Invalid(format!(
            "'{field}' must be 1 to {MAX_USSD_INPUT} characters of {what}"
        )));
    }
    Ok(())
}

impl Service {
    /// Sends a code (a new session) or a menu reply, and answers with the
    /// network's answer once its `ussd` event is committed.
    pub async fn ussd(
        &self,
        name: &InstanceName,
        request: UssdRequest,
        timeout_ms: Option<u64>,
    ) -> Result<UssdAnswer, ServiceError> {
        match &request {
            UssdRequest::Code(code) => check_input("code", code, true)?,
            UssdRequest::Reply(reply) => check_input("reply", reply, false)?,
            UssdRequest::Cancel => {}
        }
        let timeout = match timeout_ms {
            Some(ms) if USSD_TIMEOUT_MS.contains(&ms) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(ServiceError::Invalid(format!(
                    "'timeoutMs' must be between {} and {}, not {ms}",
                    USSD_TIMEOUT_MS.start(),
                    USSD_TIMEOUT_MS.end()
                )))
            }
            None => DEFAULT_USSD_TIMEOUT,
        };
        self.exists(name)?;
        let args = super::remote::ussd_args(&request, timeout);
        let wait = timeout + DRIVER_GRACE + super::instances::REMOTE_GRACE;
        match self
            .ask_owner(name, super::remote::USSD, args, wait)
            .await?
        {
            Some(answer) => serde_json::from_value(answer).map_err(|e| {
                ServiceError::Conflict(format!(
                    "instance '{name}': its node's answer is unreadable: {e}"
                ))
            }),
            None => self.ussd_here(name, request, timeout).await,
        }
    }

    /// [`Service::ussd`] on this node's driver.
    pub(super) async fn ussd_here(
        &self,
        name: &InstanceName,
        request: UssdRequest,
        timeout: Duration,
    ) -> Result<UssdAnswer, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let accepted = self.registry.command(
            name,
            Command::Ussd {
                request,
                timeout,
                reply,
            },
        )?;
        if !accepted {
            return Err(ServiceError::Conflict(format!(
                "instance '{name}' has no running modem (connect it first)"
            )));
        }
        match tokio::time::timeout(timeout + DRIVER_GRACE, answer).await {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(err))) => Err(match err {
                UssdError::Timeout(_) => ServiceError::Timeout(err.to_string()),
                UssdError::Conflict(_) | UssdError::NoSession(_) | UssdError::Refused(_) => {
                    ServiceError::Conflict(err.to_string())
                }
                UssdError::Store(err) => ServiceError::Store(err),
            }),
            Ok(Err(_)) => Err(ServiceError::Conflict(format!(
                "instance '{name}': the modem stopped before it answered"
            ))),
            Err(_) => Err(ServiceError::Timeout(format!(
                "instance '{name}': the modem did not answer within {:?}",
                timeout + DRIVER_GRACE
            ))),
        }
    }
}
