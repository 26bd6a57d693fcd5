//! The API contract: an OpenAPI 3.1 document generated from the handlers
//! and their types (`GET /openapi.json`), and a reference page (`GET /docs`).
//!
//! Each REST handler carries its `#[utoipa::path]` beside its code; this
//! module gathers them, adds what every route shares (credentials, the
//! error answers each kind of route can give) and documents the routes
//! whose handlers live elsewhere (the WebSocket and SSE endpoints). The
//! streaming protocols are described in `overview.md`, shown on the page.
//!
//! The reference page is Swagger UI, whose files are compiled into the
//! binary (`utoipa-swagger-ui` with `vendored`): the server runs offline.
//! `tests/api/openapi.rs` checks that the routes registered in
//! `http::configure` and the paths documented here are the same.

use std::{collections::BTreeMap, sync::Arc, sync::OnceLock};

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::{
    openapi::{
        path::{Operation, ParameterIn},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
        RefOr, Response, Schema,
    },
    IntoParams, Modify, OpenApi, ToSchema,
};

use super::{error::ApiError, events, group, health, instance, message, realtime, token, webhook};

/// The instance a route acts on, in its path.
#[derive(IntoParams)]
#[into_params(names("instance"), parameter_in = Path)]
pub struct InstancePath(
    /// The instance's name.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", example = "alpha")]
    #[allow(dead_code)]
    String,
);

/// The error body every failure answers with.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "NOT_FOUND", "message": "instance 'alpha' not found"}}))]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong: a stable code to switch on, and a message for a person.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    code: ErrorCode,
    message: String,
}

/// The stable error codes (see the table in the description).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(dead_code)]
pub enum ErrorCode {
    BadRequest,
    AuthFailed,
    TokenExpired,
    PermissionDenied,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    CursorExpired,
    RateLimited,
    ConnectionLimit,
    ServiceUnavailable,
    GatewayTimeout,
    InternalError,
}

/// `GET /` without an upgrade: where things are.
#[derive(Serialize, ToSchema)]
pub struct RootInfo {
    events: String,
    health: String,
    name: String,
    sse: String,
    version: String,
    websocket: String,
}

/// The schema of a body that is either `{"<key>": {...}}` (Evolution's
/// wrapper) or the bare object. Either may carry other keys, so it is
/// `anyOf`: a wrapped body is also a bare one with an extra key.
pub fn wrapped_or_bare(key: &str, fields: &str, example: Value) -> RefOr<Schema> {
    let reference = json!({ "$ref": format!("#/components/schemas/{fields}") });
    let schema = json!({
        "anyOf": [
            { "type": "object", "required": [key], "properties": { key: reference } },
            reference,
        ],
        "examples": [example],
    });
    // unwrap: the value above is a well-formed schema object.
    #[allow(clippy::unwrap_used)]
    serde_json::from_value(schema).unwrap()
}

/// A WebSocket upgrade on every instance the credential sees.
///
/// A plain GET (no `Upgrade: websocket`) answers 400. The protocol, its
/// messages and close codes are described above, under "The WebSocket
/// protocol".
#[utoipa::path(
    get, path = "/ws", tag = "streams", operation_id = "websocket",
    params(realtime::StreamParams),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket session begins"),
        (status = 400, description = "Not an upgrade request", body = ErrorBody,
            example = json!({"error": {"code": "BAD_REQUEST",
                "message": "this endpoint speaks WebSocket: send an Upgrade request"}})),
    ),
)]
#[allow(dead_code)]
fn websocket() {}

/// A WebSocket upgrade on one instance.
#[utoipa::path(
    get, path = "/ws/{instance}", tag = "streams", operation_id = "websocketInstance",
    params(InstancePath, realtime::StreamParams),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket session begins"),
        (status = 400, description = "Not an upgrade request", body = ErrorBody,
            example = json!({"error": {"code": "BAD_REQUEST",
                "message": "this endpoint speaks WebSocket: send an Upgrade request"}})),
    ),
)]
#[allow(dead_code)]
fn websocket_instance() {}

/// Where things are; a browser (an `Accept` naming `text/html`) gets the
/// dashboard's page instead, and a WebSocket upgrade here is served like
/// `/ws` (Evolution's URL). No key needed for the plain GET.
#[utoipa::path(
    get, path = "/", tag = "streams", operation_id = "root", security(),
    responses(
        (status = 101, description = "Switching Protocols (an upgrade request, served like /ws)"),
        (status = 200, description = "Where things are", body = RootInfo, example = json!({
            "events": "/events", "health": "/health", "name": "switchboard",
            "sse": "/events/stream", "version": "0.1.0", "websocket": "/ws"})),
    ),
)]
#[allow(dead_code)]
fn root() {}

/// Server-Sent Events: the same events, filters and cursor as `/ws`.
///
/// See "Server-Sent Events" above. `Last-Event-ID` wins over `since`.
#[utoipa::path(
    get, path = "/events/stream", tag = "streams", operation_id = "eventStream",
    params(
        realtime::StreamParams,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "An endless event stream", content_type = "text/event-stream",
            body = String, example = "retry: 3000\n\nid: 1042\nevent: message\ndata: {\"id\":1042,\"seq\":17,\"event\":\"message\",\"instance\":\"alpha\",\"timestamp\":\"2026-11-22T10:30:00.123456Z\",\"data\":{}}\n\n"),
        (status = 410, description = "`since` is older than the retained log", body = ErrorBody,
            example = json!({"error": {"code": "CURSOR_EXPIRED", "message": "events after 3 were deleted by retention"}})),
        (status = 429, description = "The credential (with the tokens its key minted), or an instance it \
            watches, already holds all the streams it may; one must close first", body = ErrorBody,
            example = json!({"error": {"code": "CONNECTION_LIMIT", "message": "this credential (with the tokens its key minted) already holds its maximum of 100 connections"}})),
        (status = 503, description = "The server holds its maximum of connections; retry later", body = ErrorBody,
            example = json!({"error": {"code": "CONNECTION_LIMIT", "message": "the server holds its maximum of 10000 connections; retry later"}})),
    ),
)]
#[allow(dead_code)]
fn event_stream() {}

/// The CORS preflight a browser sends before an `EventSource` reconnects.
#[utoipa::path(
    options, path = "/events/stream", tag = "streams", operation_id = "eventStreamPreflight",
    security(),
    responses(
        (status = 204, description = "Allowed; CORS headers name the origin"),
        (status = 403, description = "The Origin is not in `http.allowed_origins`", body = ErrorBody,
            example = json!({"error": {"code": "PERMISSION_DENIED",
                "message": "Origin 'https://elsewhere.example' is not in http.allowed_origins"}})),
    ),
)]
#[allow(dead_code)]
fn event_stream_preflight() {}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "reference", operation_id = "openapi", security(),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object,
        example = json!({"openapi": "3.1.0", "info": {"title": "switchboard", "version": "0.1.0"},
            "paths": {"/health": {"get": {"operationId": "health"}}}}))),
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

/// The reference page (redirects to `/docs/`).
#[utoipa::path(
    get, path = "/docs", tag = "reference", operation_id = "docsRedirect", security(),
    responses((status = 308, description = "To /docs/", headers(("Location" = String)))),
)]
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// The reference page: this document, browsable.
#[utoipa::path(
    get, path = "/docs/", tag = "reference", operation_id = "docsIndex", security(),
    responses((status = 200, description = "The page", content_type = "text/html", body = String)),
)]
pub async fn docs_index() -> Result<HttpResponse, ApiError> {
    docs_asset("index.html")
}

/// The page's scripts and styles, built into the server.
#[utoipa::path(
    get, path = "/docs/{file}", tag = "reference", operation_id = "docsFile", security(),
    params(("file" = String, Path, description = "A file of the page", example = "swagger-ui.css")),
    responses(
        (status = 200, description = "The file (its type follows its name)", content_type = "*/*", body = String),
        (status = 404, description = "No such file", body = ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "no file /docs/nope.js"}})),
    ),
)]
pub async fn docs_file(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    docs_asset(&path)
}

fn docs_asset(file: &str) -> Result<HttpResponse, ApiError> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        Arc::new(
            utoipa_swagger_ui::Config::new(["/openapi.json"])
                .try_it_out_enabled(true)
                .persist_authorization(true)
                .display_operation_id(true)
                // The page runs offline: it sends the document to no
                // outside validator.
                .validator_url("none"),
        )
    });
    let found = utoipa_swagger_ui::serve(file, config.clone())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("serving /docs/{file}: {e}")))?;
    let Some(found) = found else {
        return Err(ApiError::NotFound(format!(
            "no file /docs/{}",
            super::truncate(file, 100)
        )));
    };
    let mut response = HttpResponse::Ok();
    response.content_type(found.content_type);
    if found.gzpipped {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    Ok(response.body(found.bytes.into_owned()))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard",
        description = include_str!("overview.md"),
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        instance::create, instance::fetch, instance::connect, instance::connection_state,
        instance::restart, instance::restart_put, instance::logout, instance::delete,
        instance::set_presence, instance::websocket_set, instance::websocket_find,
        instance::retention_set, instance::retention_find,
        message::send_text, message::cancel, super::history::find, message::find_one,
        super::call::reject, super::ussd::send, super::ussd::cancel,
        group::create, group::update_participant, group::update_participant_put, group::fetch_all,
        super::pool::create, super::pool::update, super::pool::delete, super::pool::find,
        webhook::set, webhook::find,
        super::settings::set, super::settings::find,
        token::mint,
        events::read,
        health::health, health::ready, health::metrics, super::cluster::nodes,
        websocket, websocket_instance, root, event_stream, event_stream_preflight,
        openapi_json, docs_redirect, docs_index, docs_file,
        super::dashboard::index, super::dashboard::file, super::dashboard::built,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, ErrorCode, RootInfo,
        crate::domain::DriverConfig, crate::domain::SimulatorConfig, crate::domain::ModemOptions,
        crate::domain::GnssOptions, crate::domain::GnssVendor, crate::domain::FlowControl,
        crate::domain::Throttle,
        instance::WebsocketFields, webhook::WebhookFields,
    )),
    modifiers(&Shared),
    tags(
        (name = "instances", description = "Create, start, stop and configure instances"),
        (name = "messages", description = "Send texts, hang up calls, USSD"),
        (name = "groups", description = "Broadcast groups"),
        (name = "pools", description = "Pools: one name that sends through several instances"),
        (name = "webhooks", description = "Delivery of events to a URL"),
        (name = "auth", description = "Scoped tokens for stream clients"),
        (name = "events", description = "The event log"),
        (name = "streams", description = "WebSocket and Server-Sent Events (see the description)"),
        (name = "operations", description = "Liveness, readiness, metrics"),
        (name = "reference", description = "This document and its page"),
        (name = "dashboard", description = "The web dashboard's page and files (a browser's `GET /` gets the page too)"),
    ),
)]
struct ApiDoc;

/// Adds what the routes share: the credentials, and the error answers each
/// kind of route can give, so no handler has to list them all.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apikey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "apikey",
                "The admin key, or an instance's own key",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The same key as `Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
        let any_key = vec![
            utoipa::openapi::security::SecurityRequirement::new("apikey", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
        ];
        let mut on_instance = Vec::new();
        for item in doc.paths.paths.values_mut() {
            for operation in operations(item) {
                add_errors(operation, &any_key);
                if takes_instance(operation) {
                    on_instance.extend(operation.operation_id.clone());
                }
            }
        }
        link_from_create(doc, &on_instance);
    }
}

/// Links the created instance's name to every operation on an instance, so
/// a client (or a fuzzer's stateful phase) knows where the name comes from.
fn link_from_create(doc: &mut utoipa::openapi::OpenApi, targets: &[String]) {
    let Some(create) = doc
        .paths
        .paths
        .get_mut("/instance/create")
        .and_then(|item| item.post.as_mut())
    else {
        return;
    };
    let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else {
        return;
    };
    let mut value = serde_json::to_value(&*created).unwrap_or_default();
    let links: serde_json::Map<String, Value> = targets
        .iter()
        .map(|id| {
            (
                id.clone(),
                json!({"operationId": id,
                       "parameters": {"instance": "$response.body#/instance/instanceName"}}),
            )
        })
        .collect();
    value["links"] = Value::Object(links);
    if let Ok(response) = serde_json::from_value(value) {
        *created = response;
    }
}

fn takes_instance(operation: &Operation) -> bool {
    operation.parameters.iter().flatten().any(
        |p| matches!(p, RefOr::T(p) if p.name == "instance" && p.parameter_in == ParameterIn::Path),
    )
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Adds an operation's error answers by what it takes.
fn add_errors(
    operation: &mut Operation,
    any_key: &[utoipa::openapi::security::SecurityRequirement],
) {
    let public = operation.security.as_ref().is_some_and(|s| s.is_empty());
    let streams = operation
        .tags
        .as_ref()
        .is_some_and(|t| t.iter().any(|t| t == "streams"));
    if !public {
        if operation.security.is_none() {
            operation.security = Some(any_key.to_vec());
        }
        add_error(operation, 401, "AUTH_FAILED", "missing or invalid credentials, or an expired token",
            "missing or invalid credentials: send the key as the 'apikey' header or 'Authorization: Bearer <key>'");
        add_error(
            operation,
            403,
            "PERMISSION_DENIED",
            "the key may not do this",
            "this key may not act on instance 'beta'",
        );
        add_error(
            operation,
            429,
            "RATE_LIMITED",
            "too many failed authentications from this address, or (in a cluster) too many \
             commands already waiting for the node driving the instance; retry later",
            "too many failed authentications from your address; try again in a minute",
        );
        if streams {
            add_error(
                operation,
                503,
                "CONNECTION_LIMIT",
                "no stream place is free; retry",
                "too many open streams",
            );
        } else {
            add_error(
                operation,
                503,
                "SERVICE_UNAVAILABLE",
                "the database is unreachable; retry",
                "the database is unavailable; try again shortly",
            );
        }
    }
    let params: Vec<&utoipa::openapi::path::Parameter> = operation
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p),
            RefOr::Ref(_) => None,
        })
        .collect();
    let has_instance = params
        .iter()
        .any(|p| p.name == "instance" && p.parameter_in == ParameterIn::Path);
    if has_instance {
        add_error(
            operation,
            404,
            "NOT_FOUND",
            "no such instance",
            "instance 'alpha' not found",
        );
    }
    // Every route refuses a query parameter it does not take.
    add_error(
        operation,
        400,
        "BAD_REQUEST",
        "a query parameter the route does not take, or a parameter or the body that is not valid",
        "unknown query parameter 'instances': did you mean 'instance'?",
    );
    if operation.request_body.is_some() {
        add_error(
            operation,
            413,
            "PAYLOAD_TOO_LARGE",
            "the body is larger than limits.max_body_bytes",
            "the request body is larger than 262144 bytes",
        );
    }
}

fn add_error(operation: &mut Operation, status: u16, code: &str, description: &str, message: &str) {
    let key = status.to_string();
    if operation.responses.responses.contains_key(&key) {
        return;
    }
    let mut response = json!({
        "description": description,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorBody"},
            "example": {"error": {"code": code, "message": message}},
        }},
    });
    if status == 429 || status == 503 {
        response["headers"] = json!({"Retry-After": {
            "description": "Seconds to wait", "schema": {"type": "integer"}}});
    }
    // unwrap: the value above is a well-formed response object.
    #[allow(clippy::unwrap_used)]
    let response: Response = serde_json::from_value(response).unwrap();
    operation
        .responses
        .responses
        .insert(key, RefOr::T(response));
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc
    })
}

/// The document as served, serialized once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // unwrap: the document is plain data; serializing it cannot fail.
        #[allow(clippy::unwrap_used)]
        serde_json::to_string(document()).unwrap()
    })
}

/// The methods the document lists for a route pattern (for `Allow` on 405).
pub fn allowed_methods(pattern: &str) -> Vec<&'static str> {
    let Some(item) = document().paths.paths.get(pattern) else {
        return Vec::new();
    };
    let mut methods = Vec::new();
    for (method, present) in [
        ("GET", item.get.is_some()),
        ("POST", item.post.is_some()),
        ("PUT", item.put.is_some()),
        ("DELETE", item.delete.is_some()),
        ("OPTIONS", item.options.is_some()),
    ] {
        if present {
            methods.push(method);
        }
    }
    methods
}

/// Every documented (path, method) pair, for the route check.
pub fn documented_routes() -> BTreeMap<String, Vec<&'static str>> {
    document()
        .paths
        .paths
        .keys()
        .map(|path| (path.clone(), allowed_methods(path)))
        .collect()
}

/// The request's route pattern, for [`allowed_methods`].
pub fn pattern_of(req: &HttpRequest) -> Option<String> {
    req.match_pattern()
}
