//! JSON request bodies: [`Json`] for a body a route needs, [`OptionalJson`]
//! for one it may go without.
//!
//! Both refuse anything but a JSON object at the top (serde's derived
//! structs would also take an array of their fields by position, so
//! `["alpha"]` would create an instance), name the field that failed, and
//! answer a body over `limits.max_body_bytes` with 413. actix's own
//! `Option<Json<T>>` would turn a body that fails to parse into `None`:
//! `{"callId": 5}` would act like no body at all (on `call/reject`, hang
//! up whichever call rings). Here only an absent, blank or `null` body is
//! `None`.

use std::{future::Future, pin::Pin};

use actix_web::{dev::Payload, error::PayloadError, web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON object body.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The parsed body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A JSON object body that may be absent.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            match parse::<T>(&read(bytes).await?)? {
                Some(value) => Ok(Json(value)),
                None => Err(ApiError::BadRequest(
                    "the request body must be a JSON object".into(),
                )),
            }
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move { parse::<T>(&read(bytes).await?).map(OptionalJson) })
    }
}

async fn read(
    bytes: impl Future<Output = Result<web::Bytes, actix_web::Error>>,
) -> Result<web::Bytes, ApiError> {
    bytes
        .await
        .map_err(|err| match err.as_error::<PayloadError>() {
            Some(PayloadError::Overflow) => {
                ApiError::PayloadTooLarge("the request body is too large".into())
            }
            _ => ApiError::BadRequest(format!("the request body could not be read: {err}")),
        })
}

/// `None` for a blank body or `null`; the value for an object; else a 400.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, ApiError> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| bytes[i]) {
        None => return Ok(None),
        Some(b'{') | Some(b'n') => {}
        Some(_) => {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON object".into(),
            ))
        }
    }
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let value: Option<T> = serde_path_to_error::deserialize(&mut reader).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        if field.is_empty() || field == "." || field == "?" {
            ApiError::BadRequest(format!("the request body is not valid: {inner}"))
        } else {
            ApiError::BadRequest(format!("the request body is not valid: {field}: {inner}"))
        }
    })?;
    reader
        .end()
        .map_err(|err| ApiError::BadRequest(format!("the request body is not valid: {err}")))?;
    Ok(value)
}

/// For a field where `null` and absence mean different things: `null` is
/// `Some(None)` ("remove it"), absence `None` ("leave it"), with
/// `#[serde(default, deserialize_with = "present")]`.
pub(super) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: String,
    }

    #[test]
    fn an_array_is_not_taken_for_a_struct_by_position() {
        let err = parse::<Body>(br#"["alpha"]"#).expect_err("an array");
        assert!(err.to_string().contains("must be a JSON object"), "{err}");
    }

    #[test]
    fn a_blank_body_or_null_is_absent_and_a_bad_field_is_named() {
        assert!(parse::<Body>(b"  ").expect("blank").is_none());
        assert!(parse::<Body>(b"null").expect("null").is_none());
        let err = parse::<Body>(br#"{"name": 5}"#).expect_err("a number");
        assert!(err.to_string().contains("name: invalid type"), "{err}");
        assert_eq!(
            parse::<Body>(br#"{"name": "a"}"#)
                .expect("valid")
                .map(|b| b.name),
            Some("a".to_owned())
        );
    }
}
