//! The API contract: `/openapi.json` describes every route the server
//! registers and nothing else; `/docs` serves its reference page from the
//! binary; and schemathesis, an implementation nobody here wrote, fuzzes the
//! running server from the document on both databases and finds no server
//! error and no answer that contradicts it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use serde_json::Value;
use switchboard::http::openapi;

use crate::{
    helpers::{TestApp, TestDb},
    on_both_backends,
};

/// The (path, method) pairs `http::configure` registers, read from its
/// source: each `resource("…")` and the methods of the routes chained on it.
fn registered_routes() -> BTreeMap<String, BTreeSet<String>> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs"))
        .expect("read src/http/mod.rs");
    let start = source.find("pub fn configure").expect("http::configure");
    let end = start + source[start..].find("\n}\n").expect("the end of configure");
    let body = &source[start..end];
    let mut routes = BTreeMap::new();
    for chunk in body.split("resource(\"").skip(1) {
        let path = chunk.split('"').next().expect("a path").to_owned();
        let mut methods = BTreeSet::new();
        for (needle, method) in [
            ("web::get()", "GET"),
            ("web::post()", "POST"),
            ("web::put()", "PUT"),
            ("web::delete()", "DELETE"),
            ("Method::OPTIONS", "OPTIONS"),
        ] {
            if chunk.contains(needle) {
                methods.insert(method.to_owned());
            }
        }
        assert!(!methods.is_empty(), "no method found for {path}");
        assert!(
            routes.insert(path.clone(), methods).is_none(),
            "{path} registered twice"
        );
    }
    routes
}

fn documented_routes() -> BTreeMap<String, BTreeSet<String>> {
    openapi::documented_routes()
        .into_iter()
        .map(|(path, methods)| (path, methods.into_iter().map(str::to_owned).collect()))
        .collect()
}

#[test]
fn every_registered_route_is_documented_and_every_documented_route_is_registered() {
    let registered = registered_routes();
    let documented = documented_routes();
    assert!(
        registered.len() > 30,
        "the route reader found too few routes: {registered:?}"
    );
    let missing: Vec<_> = registered
        .iter()
        .filter(|(path, methods)| documented.get(*path) != Some(methods))
        .map(|(path, methods)| {
            format!(
                "{path} {methods:?} (documented: {:?})",
                documented.get(path)
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "routes registered in src/http/mod.rs but not described as such in the OpenAPI \
         document (add #[utoipa::path] and list it in http::openapi): {missing:#?}"
    );
    let extra: Vec<_> = documented
        .keys()
        .filter(|path| !registered.contains_key(*path))
        .collect();
    assert!(
        extra.is_empty(),
        "paths in the OpenAPI document that no route serves: {extra:?}"
    );
}

#[test]
fn every_operation_has_an_id_a_summary_and_an_example_answer() {
    let doc: Value = serde_json::from_str(openapi::document_json()).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let at = format!("{method} {path}");
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no id"));
            assert!(
                ids.insert(id.to_owned()),
                "{at}: operationId {id} is used twice"
            );
            assert!(operation["summary"].is_string(), "{at}: no summary");
            let responses = operation["responses"].as_object().expect("responses");
            for (status, response) in responses {
                let Some(content) = response["content"].as_object() else {
                    continue;
                };
                for (media, body) in content {
                    if media.starts_with("application/json") {
                        assert!(
                            body.get("example").is_some() || body.get("examples").is_some(),
                            "{at}: the {status} answer has no example"
                        );
                    }
                }
            }
            if operation["security"] != Value::Array(vec![]) {
                assert!(responses.contains_key("401"), "{at}: no 401 documented");
            }
        }
    }
}

/// Every documented route refuses a query parameter it does not take,
/// naming it, also the routes that read no query at all (a misspelt
/// `instance=` there was ignored, so the answer looked right and was not).
/// The instance `alpha` exists and is left as it was: the refusal comes
/// before anything is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_query_parameter_it_does_not_take_and_names_it() {
    let db = TestDb::new(crate::helpers::Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("alpha", crate::helpers::quick_simulator())
        .await;
    let mut checked = 0;
    for (path, methods) in documented_routes() {
        let concrete = path
            .split('/')
            .map(|segment| match segment.starts_with('{') {
                true => "alpha",
                false => segment,
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in methods.iter().filter(|m| *m != "OPTIONS") {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
            let answer = app
                .http
                .request(
                    method.clone(),
                    app.url(&format!("{concrete}?instanceNmae=alpha")),
                )
                .header("apikey", &app.admin_key)
                .send()
                .await
                .expect("send");
            let status = answer.status();
            let body = answer.text().await.expect("a body");
            assert_eq!(status, 400, "{method} {path}: {body}");
            assert!(body.contains("instanceNmae"), "{method} {path}: {body}");
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} operations checked");
    // Nothing was done: alpha is still there.
    let alpha = app
        .admin(reqwest::Method::GET, "/instance/connectionState/alpha")
        .send()
        .await
        .expect("send");
    assert_eq!(alpha.status(), 200);
    app.stop().await;
}

on_both_backends! {
    async fn the_document_and_its_reference_page_are_served_without_a_key(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        let served = app.http.get(app.url("/openapi.json")).send().await.expect("get");
        assert_eq!(served.status(), 200);
        let served: Value = served.json().await.expect("JSON");
        let built: Value = serde_json::from_str(openapi::document_json()).expect("JSON");
        assert_eq!(served, built);

        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let redirect = client.get(app.url("/docs")).send().await.expect("get");
        assert_eq!(redirect.status(), 308);
        assert_eq!(redirect.headers()["location"], "/docs/");

        let page = app.http.get(app.url("/docs/")).send().await.expect("get");
        assert_eq!(page.status(), 200);
        assert!(page.text().await.expect("html").contains("swagger-ui"));
        let init = app.http.get(app.url("/docs/swagger-initializer.js")).send().await.expect("get");
        assert_eq!(init.status(), 200);
        let init = init.text().await.expect("js");
        assert!(init.contains("/openapi.json"));
        // Offline: the page sends the document to no outside validator.
        assert!(
            init.lines().any(|l| l.contains("\"validatorUrl\"") && l.contains("\"none\"")),
            "{init}"
        );
        let missing = app.http.get(app.url("/docs/nope.js")).send().await.expect("get");
        assert_eq!(missing.status(), 404);
        let body: Value = missing.json().await.expect("a JSON error");
        assert_eq!(body["error"]["code"], "NOT_FOUND");

        let wrong = app.http.delete(app.url("/instance/fetchInstances")).send().await.expect("send");
        assert_eq!(wrong.status(), 405);
        assert_eq!(wrong.headers()["allow"], "GET");
        app.stop().await;
    }

    async fn schemathesis_finds_no_server_error_and_no_answer_that_contradicts_the_contract(backend: Backend) {
        let db = TestDb::new(backend).await;
        let scratch = tempfile::tempdir().expect("a temporary directory");
        // The server runs in a network namespace with loopback only (see
        // tests/schemathesis/run.sh): it reaches PostgreSQL through a Unix
        // socket that this test forwards to the database's TCP address.
        let _forwarder;
        let database_url = match &db.url {
            None => None,
            Some(url) => {
                let forwarder = UnixForwarder::start(scratch.path(), url).await;
                let local = forwarder.url.clone();
                _forwarder = forwarder;
                Some(local)
            }
        };
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/run.sh");
        let examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| "60".into());
        let mut command = Command::new("unshare");
        command
            .current_dir(scratch.path())
            .arg("--net")
            .arg(&script)
            .env("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard"))
            .env("ST", std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "st".into()))
            .env("PORT", port.to_string())
            .env("SERVER_LOG", scratch.path().join("server.log"))
            .env("SWITCHBOARD__HTTP__ADDRESS", "127.0.0.1")
            .env("SWITCHBOARD__HTTP__PORT", port.to_string())
            .env("SWITCHBOARD__AUTH__API_KEY", "schemathesis-admin-key-0123456789abcdef")
            .env("SWITCHBOARD__DATA_DIR", scratch.path().join("data"))
            // The ignored-auth check sends wrong keys on purpose; the
            // failed-authentication limit must not lock the fuzzer out.
            .env("SWITCHBOARD__LIMITS__FAILED_AUTH_PER_MINUTE", "1000000000")
            .env("RUST_LOG", "warn")
            .env(
                "ST_ARGS",
                format!(
                    "--max-examples {examples} --seed 1 --workers 1 \
                     --exclude-checks positive_data_acceptance \
                     --exclude-path /ws --exclude-path /ws/{{instance}} \
                     --exclude-path /events/stream \
                     --max-redirects 0 --request-timeout 20 --no-color \
                     --suppress-health-check all"
                ),
            )
            .env_remove("DATABASE_URL");
        if let Some(url) = &database_url {
            command.env("DATABASE_URL", url);
        }
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("run unshare (util-linux) with tests/schemathesis/run.sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let server_log =
            std::fs::read_to_string(scratch.path().join("server.log")).unwrap_or_default();
        assert!(
            output.status.success(),
            "schemathesis found problems ({:?}):\n{stdout}\n{stderr}\n--- server log ---\n{server_log}",
            output.status
        );
        assert!(
            stdout.contains("Tested:"),
            "schemathesis ran no operation:\n{stdout}\n{stderr}"
        );
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Forwards a PostgreSQL Unix socket in a directory to the database's TCP
/// address, for a server in another network namespace.
struct UnixForwarder {
    /// The database URL that goes through the socket.
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl UnixForwarder {
    async fn start(dir: &Path, tcp_url: &str) -> UnixForwarder {
        let options: sqlx::postgres::PgConnectOptions = tcp_url.parse().expect("a PostgreSQL URL");
        let target = format!("{}:{}", options.get_host(), options.get_port());
        let socket = dir.join(".s.PGSQL.5432");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind the socket");
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        let user = options.get_username();
        let database = options.get_database().expect("a database name");
        UnixForwarder {
            url: format!(
                "postgres://{user}@localhost/{database}?host={}",
                dir.display()
            ),
            task,
        }
    }
}

impl Drop for UnixForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
