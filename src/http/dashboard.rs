//! The dashboard: the web app a person running switchboard opens in a
//! browser, served from assets compiled into the binary.
//!
//! `GET /` answers browsers (an `Accept` that names `text/html`) with the
//! app's page and every other client with the JSON pointer to the API it
//! has always answered; a WebSocket upgrade on `/` never gets here (see
//! [`super::ws`]). The app's files live under `/dashboard/`, so they cannot
//! collide with an API route. The front-end sources and their build are in
//! `dashboard/` at the top of the repository; the built files in
//! `dashboard/dist` are committed and embedded here, so a server built
//! without Node.js still serves the dashboard (see `dashboard/README.md`).
//!
//! The app talks to the same REST, WebSocket and metrics routes as any other
//! client: it holds no privilege of its own, and the key a person types in
//! stays in that browser tab.

use actix_web::{
    http::header::{self, Accept, HeaderValue},
    web, HttpMessage, HttpRequest, HttpResponse,
};
use rust_embed::RustEmbed;

use super::{error::ApiError, ws};

/// The built dashboard (`npm run build` in `dashboard/`). The recorded hash
/// of the sources it was built from is not served.
#[derive(RustEmbed)]
#[folder = "dashboard/dist/"]
#[exclude = "*.sha256"]
struct Assets;

/// What the page may load and where it may connect: only this server. No
/// inline script or style runs, and no other site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /` without an upgrade: the dashboard for a browser, the JSON
/// pointer to the API for everyone else.
pub async fn root(req: HttpRequest) -> HttpResponse {
    let mut response = if wants_html(&req) {
        page()
    } else {
        ws::root().await
    };
    // One URL, two representations: caches must key on Accept.
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// The dashboard's page (the same as `GET /` for a browser).
#[utoipa::path(
    get, path = "/dashboard/", tag = "dashboard", operation_id = "dashboardPage", security(),
    responses((status = 200, description = "The dashboard's page", content_type = "text/html")),
)]
pub async fn index() -> HttpResponse {
    page()
}

/// A file of the dashboard at its top level (the page, the icon).
#[utoipa::path(
    get, path = "/dashboard/{file}", tag = "dashboard", operation_id = "dashboardFile", security(),
    params(("file" = String, Path, description = "A file name, e.g. `favicon.svg`")),
    responses((status = 200, description = "The file"),
        (status = 404, description = "No such file", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "no dashboard file 'nope.js'"}}))),
)]
pub async fn file(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    asset(&name)
}

/// A built script or stylesheet of the dashboard; their names carry their
/// content's hash, so they are cached for good.
#[utoipa::path(
    get, path = "/dashboard/assets/{file}", tag = "dashboard", operation_id = "dashboardAsset",
    security(),
    params(("file" = String, Path, description = "A built file's name, e.g. `index-3f2a.js`")),
    responses((status = 200, description = "The file"),
        (status = 404, description = "No such file", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "no dashboard file 'assets/nope.js'"}}))),
)]
pub async fn built(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    asset(&format!("assets/{name}"))
}

/// One of the app's files by its path in the build.
fn asset(path: &str) -> Result<HttpResponse, ApiError> {
    if path == "index.html" {
        return Ok(page());
    }
    let file = Assets::get(path).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no dashboard file '{}'",
            super::truncate(path, 200)
        ))
    })?;
    // Vite names the files under assets/ by their content hash: a name
    // never changes meaning, so browsers may keep them for good.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(HttpResponse::Ok()
        .content_type(file.metadata.mimetype())
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(file.data.into_owned()))
}

/// The app's page, with the headers that keep it to this server.
fn page() -> HttpResponse {
    match Assets::get("index.html") {
        Some(file) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            // Always revalidated, so a new server version brings its app.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(file.data.into_owned()),
        // The build is committed; a checkout without it cannot compile
        // this module, so this is a broken deployment, not a client error.
        None => HttpResponse::InternalServerError()
            .content_type("text/plain; charset=utf-8")
            .body("the dashboard is missing from this build"),
    }
}

/// Whether the client asks for HTML: a browser navigating sends
/// `Accept: text/html,...`; curl sends `*/*` and API clients JSON. A
/// wildcard alone is not a request for the app.
fn wants_html(req: &HttpRequest) -> bool {
    req.get_header::<Accept>().is_some_and(|accept| {
        accept.iter().any(|item| {
            item.quality > header::Quality::ZERO
                && item.item.type_() == "text"
                && item.item.subtype() == "html"
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_an_accept_that_names_html_gets_the_page() {
        let browser = TestRequest::default()
            .insert_header((
                header::ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ))
            .to_http_request();
        assert!(wants_html(&browser));
        for accept in ["*/*", "application/json", "text/html;q=0", "text/*"] {
            let client = TestRequest::default()
                .insert_header((header::ACCEPT, accept))
                .to_http_request();
            assert!(!wants_html(&client), "{accept}");
        }
        assert!(!wants_html(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn the_embedded_page_loads_only_files_that_are_embedded() {
        let page = Assets::get("index.html").expect("the build has an index.html");
        let html = std::str::from_utf8(&page.data).expect("the page is UTF-8");
        let mut referenced = 0;
        for attribute in ["src=\"", "href=\""] {
            for (at, _) in html.match_indices(attribute) {
                let rest = &html[at + attribute.len()..];
                let url = &rest[..rest.find('"').expect("a closing quote")];
                let path = url
                    .strip_prefix("/dashboard/")
                    .unwrap_or_else(|| panic!("{url} is outside /dashboard/"));
                assert!(Assets::get(path).is_some(), "{url} is not embedded");
                referenced += 1;
            }
        }
        assert!(referenced >= 2, "the page loads its script and style");
        assert!(
            !html.contains("<script>") && !html.contains("<style"),
            "nothing inline: the CSP forbids it"
        );
    }
}
