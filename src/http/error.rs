//! The one error type of the HTTP boundary.
//!
//! Every handler returns [`ApiError`]; this is the only place that decides
//! status codes and the `{"error": {"code", "message"}}` body. A client's
//! mistake is always a 4xx with a message that says what to fix; a server
//! fault is logged with its cause and answered without it.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;

use crate::{hub::feed::FeedError, service::ServiceError, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid credentials: send the key as the 'apikey' header or 'Authorization: Bearer <key>'")]
    Unauthorized,
    #[error("the token has expired; get a new one from POST /auth/token and resume with since")]
    TokenExpired,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    CursorExpired(String),
    #[error("{0}")]
    RateLimited(String),
    /// The server holds all the connections it takes (503: retry later).
    #[error("{0}")]
    ConnectionLimit(String),
    /// The credential or an instance it watches holds all the connections
    /// it may (429: the client's own, until one of them closes).
    #[error("{0}")]
    ConnectionQuota(String),
    /// A stream's credential stopped holding: its instance was deleted.
    #[error("the instance this credential was issued for has been deleted; its key and tokens no longer work")]
    Revoked,
    #[error("the database is unavailable; try again shortly")]
    Unavailable(String),
    /// The modem or the network did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::Unauthorized => "AUTH_FAILED",
            ApiError::TokenExpired => "TOKEN_EXPIRED",
            ApiError::Forbidden(_) => "PERMISSION_DENIED",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::CursorExpired(_) => "CURSOR_EXPIRED",
            ApiError::RateLimited(_) => "RATE_LIMITED",
            ApiError::ConnectionLimit(_) | ApiError::ConnectionQuota(_) => "CONNECTION_LIMIT",
            ApiError::Revoked => "CREDENTIAL_REVOKED",
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::GatewayTimeout(_) => "GATEWAY_TIMEOUT",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::TokenExpired | ApiError::Revoked => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::CursorExpired(_) => StatusCode::GONE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ConnectionLimit(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ConnectionQuota(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "request failed"),
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "request failed: database unavailable")
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable(_)
            | ApiError::ConnectionLimit(_)
            | ApiError::ConnectionQuota(_) => {
                response.insert_header(("Retry-After", "2"));
            }
            ApiError::RateLimited(_) => {
                response.insert_header(("Retry-After", "60"));
            }
            _ => {}
        }
        response.json(Body {
            error: Detail {
                code: self.code(),
                message: self.to_string(),
            },
        })
    }
}

/// A store error answers by what the client should do: retry later (503),
/// pick another key (409), stop asking (404), fix the request (400); a bug
/// or a corrupt row is a 500 whose source chain is logged, not sent.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(msg) => ApiError::Conflict(msg),
            StoreError::NotFound(msg) => ApiError::NotFound(msg),
            StoreError::Rejected { .. } => ApiError::BadRequest(err.to_string()),
            StoreError::Unavailable(_) => ApiError::Unavailable(err.report()),
            StoreError::Internal { .. } => ApiError::Internal(anyhow::Error::new(err)),
            StoreError::Closed => ApiError::Unavailable("the server is shutting down".into()),
            StoreError::Fenced(_) => ApiError::Unavailable(err.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(message) => ApiError::BadRequest(message),
            ServiceError::NotFound(message) => ApiError::NotFound(message),
            ServiceError::Conflict(message) => ApiError::Conflict(message),
            ServiceError::CursorExpired(message) => ApiError::CursorExpired(message),
            ServiceError::Timeout(message) => ApiError::GatewayTimeout(message),
            ServiceError::Busy(message) => ApiError::RateLimited(message),
            ServiceError::Store(err) => err.into(),
        }
    }
}

impl From<FeedError> for ApiError {
    fn from(err: FeedError) -> Self {
        match err {
            FeedError::Revoked => ApiError::Revoked,
            expired @ FeedError::CursorExpired { .. } => {
                ApiError::CursorExpired(expired.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn cause() -> Arc<sqlx::Error> {
        Arc::new(sqlx::Error::Protocol("the cause".into()))
    }

    #[test]
    fn store_errors_answer_by_what_the_client_should_do() {
        let cases = [
            (StoreError::Unavailable(cause()), 503, true),
            (StoreError::Conflict("taken".into()), 409, false),
            (StoreError::NotFound("gone".into()), 404, false),
            (
                StoreError::Rejected {
                    message: "invalid byte sequence".into(),
                    source: cause(),
                },
                400,
                false,
            ),
            (
                StoreError::Internal {
                    context: "event 7 is unreadable".into(),
                    source: cause(),
                },
                500,
                false,
            ),
        ];
        for (err, status, retry) in cases {
            let api = ApiError::from(err);
            let response = api.error_response();
            assert_eq!(response.status().as_u16(), status, "{api:?}");
            assert_eq!(
                response.headers().contains_key("Retry-After"),
                retry,
                "{api:?}"
            );
        }
    }

    #[test]
    fn a_rejected_value_says_why_and_an_internal_error_says_nothing_more() {
        let rejected = ApiError::from(StoreError::Rejected {
            message: "invalid byte sequence for encoding \"UTF8\": 0x00".into(),
            source: cause(),
        });
        assert!(rejected.to_string().contains("0x00"), "{rejected}");
        let internal = ApiError::from(StoreError::Internal {
            context: "event 7 is unreadable".into(),
            source: cause(),
        });
        assert_eq!(internal.to_string(), "internal error");
    }
}
