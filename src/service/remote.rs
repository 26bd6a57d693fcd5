//! Calls that need the instance's driver, made on a node that does not
//! drive it: `call/reject` and USSD are left for the owning node as
//! commands that answer (see `cluster::commands`), and the owner runs them
//! here, through the same code as a local call. Errors cross as their kind
//! and message, so a caller cannot tell which node answered.

use std::time::Duration;

use serde_json::Value;

use super::{Service, ServiceError};
use crate::{
    cluster::{Asked, RemoteCall, RemoteError},
    domain::InstanceName,
    modem::ussd::UssdRequest,
};

/// Command kinds that answer.
pub(super) const REJECT_CALL: &str = "reject_call";
pub(super) const USSD: &str = "ussd";

impl From<ServiceError> for RemoteError {
    fn from(err: ServiceError) -> Self {
        let kind = match &err {
            ServiceError::Invalid(_) => "invalid",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Conflict(_) | ServiceError::Busy(_) | ServiceError::CursorExpired(_) => {
                "conflict"
            }
            ServiceError::Timeout(_) => "timeout",
            ServiceError::Store(_) => "unavailable",
        };
        RemoteError {
            kind: kind.into(),
            message: err.to_string(),
        }
    }
}

impl From<RemoteError> for ServiceError {
    fn from(err: RemoteError) -> Self {
        let RemoteError { kind, message } = err;
        match kind.as_str() {
            "invalid" => ServiceError::Invalid(message),
            "not_found" => ServiceError::NotFound(message),
            "timeout" => ServiceError::Timeout(message),
            "unavailable" => {
                let cause: Box<dyn std::error::Error + Send + Sync> = message.into();
                ServiceError::Store(crate::store::StoreError::Unavailable(cause.into()))
            }
            _ => ServiceError::Conflict(message),
        }
    }
}

/// A USSD request as a command's arguments.
pub(super) fn ussd_args(request: &UssdRequest, timeout: Duration) -> Value {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    match request {
        UssdRequest::Code(code) => serde_json::json!({ "code": code, "timeoutMs": timeout_ms }),
        UssdRequest::Reply(reply) => serde_json::json!({ "reply": reply, "timeoutMs": timeout_ms }),
        UssdRequest::Cancel => serde_json::json!({ "cancel": true, "timeoutMs": timeout_ms }),
    }
}

fn ussd_request(args: &Value) -> Option<(UssdRequest, Duration)> {
    let timeout = Duration::from_millis(args.get("timeoutMs")?.as_u64()?);
    let text = |field: &str| args.get(field).and_then(Value::as_str).map(str::to_owned);
    let request = if let Some(code) = text("code") {
        UssdRequest::Code(code)
    } else if let Some(reply) = text("reply") {
        UssdRequest::Reply(reply)
    } else if args.get("cancel").is_some() {
        UssdRequest::Cancel
    } else {
        return None;
    };
    Some((request, timeout))
}

impl Service {
    /// Leaves a command that answers for the node driving the instance.
    /// `None`: this node drives it (or nobody does), so the caller runs it
    /// here; otherwise the owner's answer, or why there is none.
    pub(super) async fn ask_owner(
        &self,
        name: &InstanceName,
        kind: &str,
        args: Value,
        wait: Duration,
    ) -> Result<Option<Value>, ServiceError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        match cluster.ask(name, kind, args, wait).await? {
            Asked::Here => Ok(None),
            Asked::Answered(answer) => Ok(Some(answer?)),
            Asked::Unanswered(forwarded) => Err(ServiceError::Timeout(format!(
                "instance '{name}' is driven by node {}, which did not answer within {wait:?}",
                forwarded.owner.as_deref().unwrap_or("(none)")
            ))),
        }
    }

    /// Runs a command another node left for an instance this node drives.
    pub async fn run_remote(&self, call: RemoteCall) -> Result<Value, RemoteError> {
        let RemoteCall {
            instance,
            kind,
            args,
        } = call;
        let unreadable = || RemoteError {
            kind: "invalid".into(),
            message: format!("a '{kind}' command with arguments this node cannot read: {args}"),
        };
        match kind.as_str() {
            REJECT_CALL => {
                let call_id = match args.get("callId") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(id)) => Some(id.clone()),
                    Some(_) => return Err(unreadable()),
                };
                let id = self.reject_call_here(&instance, call_id).await?;
                Ok(Value::String(id))
            }
            USSD => {
                let (request, timeout) = ussd_request(&args).ok_or_else(unreadable)?;
                let answer = self.ussd_here(&instance, request, timeout).await?;
                serde_json::to_value(answer).map_err(|e| RemoteError {
                    kind: "unavailable".into(),
                    message: format!("the answer could not be encoded: {e}"),
                })
            }
            other => Err(RemoteError {
                kind: "invalid".into(),
                message: format!("node cannot run an unknown command '{other}'"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ussd_request_survives_the_trip_as_arguments() {
        for request in [
            UssdRequest::Code("*100#".into()),
            UssdRequest::Reply("1".into()),
            UssdRequest::Cancel,
        ] {
            let args = ussd_args(&request, Duration::from_millis(2500));
            let (back, timeout) = ussd_request(&args).expect("readable");
            assert_eq!(back, request);
            assert_eq!(timeout, Duration::from_millis(2500));
        }
        assert!(ussd_request(&serde_json::json!({ "timeoutMs": 5 })).is_none());
    }

    #[test]
    fn an_error_keeps_its_kind_across_nodes() {
        for err in [
            ServiceError::Invalid("a".into()),
            ServiceError::NotFound("b".into()),
            ServiceError::Conflict("c".into()),
            ServiceError::Timeout("d".into()),
        ] {
            let expected = format!("{err:?}");
            let back = ServiceError::from(RemoteError::from(err));
            assert_eq!(format!("{back:?}"), expected);
        }
    }
}
