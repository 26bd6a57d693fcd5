//! Strict query strings: every REST and stream endpoint refuses a parameter
//! it does not know (routes that read a query through [`Query`], and every
//! other documented route through [`refuse_undocumented`]), and a bad value
//! is refused naming its parameter.
//!
//! `instance=` (REST) and `instances=` (streams) are easy to swap; a server
//! that ignored the wrong one would answer with every instance, which looks
//! like success. So the names a route accepts are the ones its OpenAPI
//! description lists ([`IntoParams`]): one list, the contract, decides both
//! what is documented and what is accepted. Values are read with
//! serde_urlencoded through serde_path_to_error, which names the field that
//! failed (actix's own `Query` says only "Query deserialize error").

use std::{future::Future, pin::Pin};

use actix_web::{dev::Payload, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::{error::ApiError, truncate};

/// Names that are easily mistaken for one another, with a hint for each.
const CONFUSIONS: &[(&str, &str, &str)] = &[
    (
        "instances",
        "instance",
        "GET /events takes 'instance' (one name or a comma-separated list); 'instances' is for /ws and /events/stream",
    ),
    (
        "instance",
        "instances",
        "the streams take 'instances' (comma-separated); 'instance' is for GET /events",
    ),
    ("event", "events", "'events' takes a comma-separated list"),
    ("after", "since", "'since' is the last event id you saw"),
    ("cursor", "since", "'since' is the last event id you saw"),
    ("last_event_id", "since", "'since' is the last event id you saw"),
    ("key", "apikey", "the key goes in 'apikey'"),
    ("api_key", "apikey", "the key goes in 'apikey'"),
    ("jwt", "token", "a scoped token goes in 'token'"),
    ("instance_name", "instanceName", "parameter names are camelCase"),
    ("group_jid", "groupJid", "parameter names are camelCase"),
    ("groupId", "groupJid", "the group id goes in 'groupJid'"),
    ("get_participants", "getParticipants", "parameter names are camelCase"),
];

/// Parses a query string into `T`, refusing names `T` does not document.
pub fn parse<T: DeserializeOwned + IntoParams>(raw: &str) -> Result<T, ApiError> {
    let known: Vec<String> = T::into_params(|| None)
        .into_iter()
        .map(|p| p.name)
        .collect();
    for (name, _) in form_urlencoded::parse(raw.as_bytes()) {
        if name.is_empty() || known.iter().any(|k| *k == name) {
            continue;
        }
        return Err(ApiError::BadRequest(unknown(&name, &known)));
    }
    let pairs = form_urlencoded::parse(raw.as_bytes());
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner().to_string();
        if field.is_empty() || field == "." {
            ApiError::BadRequest(format!("the query string is not valid: {inner}"))
        } else {
            ApiError::BadRequest(format!(
                "query parameter '{field}' is not valid: {}",
                explain(&inner)
            ))
        }
    })
}

/// Refuses a request whose query string names a parameter its route does
/// not document: also on routes that read no query at all, where a wrong
/// name would otherwise be ignored without a word. Run for every request
/// (see `app.rs`); routes the document does not describe, CORS preflights,
/// and WebSocket and event-stream requests (their own parser is strict)
/// are left alone.
pub fn refuse_undocumented(req: &actix_web::dev::ServiceRequest) -> Result<(), ApiError> {
    let raw = req.query_string();
    // A CORS preflight carries the query of the request it asks about.
    if raw.is_empty()
        || req.method() == actix_web::http::Method::OPTIONS
        || is_stream(req.headers())
    {
        return Ok(());
    }
    let Some(pattern) = req.resource_map().match_pattern(req.path()) else {
        return Ok(());
    };
    let Some(known) = documented_names(&pattern, req.method()) else {
        return Ok(());
    };
    for (name, _) in form_urlencoded::parse(raw.as_bytes()) {
        if !name.is_empty() && !known.iter().any(|k| *k == name) {
            return Err(ApiError::BadRequest(unknown(&name, known)));
        }
    }
    Ok(())
}

/// A WebSocket upgrade or an `Accept: text/event-stream` request.
fn is_stream(headers: &actix_web::http::header::HeaderMap) -> bool {
    let upgrade = headers
        .get_all(actix_web::http::header::UPGRADE)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade || super::sse::accepts_event_stream(headers)
}

/// The query parameters the OpenAPI document lists for an operation;
/// `None` for an operation it does not describe.
fn documented_names(pattern: &str, method: &actix_web::http::Method) -> Option<&'static [String]> {
    use std::{collections::HashMap, sync::OnceLock};
    use utoipa::openapi::{
        path::{Operation, Parameter, ParameterIn},
        RefOr,
    };
    static NAMES: OnceLock<HashMap<(String, String), Vec<String>>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        let query = |params: &Option<Vec<RefOr<Parameter>>>| -> Vec<String> {
            params
                .iter()
                .flatten()
                .filter_map(|p| match p {
                    RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query) => {
                        Some(p.name.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        let mut names = HashMap::new();
        for (path, item) in &super::openapi::document().paths.paths {
            let operations: [(&'static str, &Option<Operation>); 5] = [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("OPTIONS", &item.options),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    let mut known = query(&item.parameters);
                    known.extend(query(&operation.parameters));
                    names.insert((path.clone(), method.to_owned()), known);
                }
            }
        }
        names
    });
    names
        .get(&(pattern.to_owned(), method.as_str().to_owned()))
        .map(Vec::as_slice)
}

/// The message for a parameter the route does not take.
fn unknown(name: &str, known: &[String]) -> String {
    let name = truncate(name, 64);
    let accepted = if known.is_empty() {
        "this route takes no query parameters".to_owned()
    } else {
        format!("it takes {}", known.join(", "))
    };
    let hint = CONFUSIONS
        .iter()
        .find(|(wrong, right, _)| *wrong == name && known.iter().any(|k| k == right))
        .map(|(_, right, why)| format!("did you mean '{right}'? {why}; "))
        .unwrap_or_default();
    format!("unknown query parameter '{name}': {hint}{accepted}")
}

/// Rewords the parser's terse messages for a person.
fn explain(inner: &str) -> String {
    match inner {
        "invalid digit found in string" | "cannot parse integer from empty string" => {
            "expected a whole number".to_owned()
        }
        "number too large to fit in target type" | "number too small to fit in target type" => {
            "the number is out of range".to_owned()
        }
        other => other.to_owned(),
    }
}

/// A REST handler's query parameters, parsed by [`parse`].
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Query<T> {
    /// The parsed parameters.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + IntoParams + 'static> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = parse(req.query_string()).map(Query);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, IntoParams, Debug)]
    #[allow(dead_code)]
    struct Read {
        instance: Option<String>,
        since: Option<i64>,
    }

    #[test]
    fn a_swapped_name_is_refused_with_the_right_one_suggested() {
        let err = parse::<Read>("instances=alpha").expect_err("unknown");
        let message = err.to_string();
        assert!(
            message.contains("unknown query parameter 'instances'"),
            "{message}"
        );
        assert!(message.contains("did you mean 'instance'?"), "{message}");
    }

    #[test]
    fn an_unknown_name_without_a_likely_twin_lists_what_the_route_takes() {
        let message = parse::<Read>("colour=red")
            .expect_err("unknown")
            .to_string();
        assert!(message.contains("'colour'"), "{message}");
        assert!(message.contains("it takes instance, since"), "{message}");
        assert!(!message.contains("did you mean"), "{message}");
    }

    #[test]
    fn a_bad_value_names_its_parameter() {
        let message = parse::<Read>("since=abc").expect_err("bad").to_string();
        assert_eq!(
            message,
            "query parameter 'since' is not valid: expected a whole number"
        );
    }

    #[test]
    fn known_names_and_empty_pairs_are_read() {
        let read = parse::<Read>("instance=alpha&&since=7").expect("valid");
        assert_eq!(read.instance.as_deref(), Some("alpha"));
        assert_eq!(read.since, Some(7));
    }
}
