//! [`OptionalJson`]: a JSON body that may be left out, but not gotten wrong.
//!
//! actix's `Option<Json<T>>` turns a body that fails to parse into `None`,
//! so `{"callId": 5}` would act like no body at all (on `call/reject`: hang
//! up whichever call rings). Here an absent or blank body is `None` and any
//! other body must parse, or the request fails with a 400 naming the field.

use std::{future::Future, pin::Pin};

use actix_web::{dev::Payload, error::PayloadError, web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body that may be absent.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes
                .await
                .map_err(|err| match err.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => {
                        ApiError::PayloadTooLarge("the request body is too large".into())
                    }
                    _ => ApiError::BadRequest(format!("the request body could not be read: {err}")),
                })?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(None));
            }
            let mut reader = serde_json::Deserializer::from_slice(&bytes);
            let value = serde_path_to_error::deserialize(&mut reader).map_err(|err| {
                let field = err.path().to_string();
                let inner = err.into_inner();
                if field.is_empty() || field == "." {
                    ApiError::BadRequest(format!("the request body is not valid: {inner}"))
                } else {
                    ApiError::BadRequest(format!("the request body is not valid: {field}: {inner}"))
                }
            })?;
            reader.end().map_err(|err| {
                ApiError::BadRequest(format!("the request body is not valid: {err}"))
            })?;
            Ok(OptionalJson(Some(value)))
        })
    }
}
