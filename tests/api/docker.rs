//! The Compose file parses and wires the services as documented. (No Docker
//! engine runs where the tests run; this checks what can be checked.)

use std::process::Command;

use serde_json::Value;

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker/docker-compose.yml exists");
    serde_norway::from_str(&text).expect("docker-compose.yml is valid YAML")
}

#[test]
fn the_compose_file_runs_switchboard_on_a_healthy_postgres() {
    let compose = compose();
    let services = &compose["services"];
    let app = &services["switchboard"];
    let db = &services["postgres"];
    assert!(app.is_object(), "a switchboard service");
    assert!(db.is_object(), "a postgres service");

    assert!(db["image"].as_str().unwrap_or("").starts_with("postgres:"));
    assert!(
        db["healthcheck"]["test"].is_array(),
        "postgres has a health check"
    );
    assert!(
        db["volumes"].as_array().is_some_and(|v| !v.is_empty()),
        "postgres keeps its data in a volume"
    );
    assert_eq!(
        app["depends_on"]["postgres"]["condition"], "service_healthy",
        "switchboard waits for a healthy database"
    );
    assert!(
        app["healthcheck"]["test"].is_array(),
        "switchboard has a health check"
    );
    let env = serde_json::to_string(&app["environment"]).expect("json");
    assert!(
        env.contains("DATABASE_URL"),
        "configured by environment: {env}"
    );
    assert!(app["env_file"].is_array() || app["env_file"].is_string());
    assert!(compose["volumes"].is_object(), "named volumes are declared");

    let build = &app["build"];
    assert_eq!(build["dockerfile"], "docker/Dockerfile");

    // The `cluster` profile adds a second node on the same database, with
    // its own node id and data volume.
    let second = &services["switchboard-b"];
    assert_eq!(second["profiles"], serde_json::json!(["cluster"]));
    assert_eq!(
        second["environment"]["DATABASE_URL"], app["environment"]["DATABASE_URL"],
        "both nodes share one PostgreSQL"
    );
    assert_ne!(
        second["environment"]["SWITCHBOARD__CLUSTER__NODE_ID"],
        app["environment"]["SWITCHBOARD__CLUSTER__NODE_ID"]
    );
    assert_ne!(second["volumes"], app["volumes"]);
    assert_eq!(
        second["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_as_a_user_with_a_health_check() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/Dockerfile");
    let text = std::fs::read_to_string(path).expect("docker/Dockerfile exists");
    assert!(text.matches("FROM ").count() >= 2, "multi-stage");
    assert!(
        text.lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "non-root"
    );
    assert!(text.contains("HEALTHCHECK"), "health check");
    // The webhook client verifies https:// receivers against the system's
    // CA store: the image that runs the server must have one.
    let runtime = &text[text.rfind("FROM ").expect("a FROM")..];
    assert!(
        runtime.contains("ca-certificates"),
        "the runtime image installs ca-certificates"
    );
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/.env.example");
    let env = std::fs::read_to_string(example).expect("docker/.env.example exists");
    assert!(env.contains("SWITCHBOARD__AUTH__API_KEY"));
}

/// The build stage of the Dockerfile as instructions: continuation lines
/// joined, comments dropped, up to the next `FROM`.
fn build_stage(dockerfile: &str) -> Vec<(String, String)> {
    let mut joined = String::new();
    let mut lines = Vec::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && joined.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
            }
            None => {
                joined.push_str(trimmed);
                lines.push(std::mem::take(&mut joined));
            }
        }
    }
    let mut stage = Vec::new();
    let mut froms = 0;
    for line in lines {
        let (instruction, rest) = line.split_once(' ').unwrap_or((&line, ""));
        if instruction == "FROM" {
            froms += 1;
            if froms > 1 {
                break;
            }
            continue;
        }
        stage.push((instruction.to_owned(), rest.trim().to_owned()));
    }
    stage
}

/// The `.dockerignore` patterns. Only plain paths are used (and supported
/// here): a pattern excludes that path and everything under it.
fn ignored_paths(root: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default();
    let patterns: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('/').to_owned())
        .collect();
    for pattern in &patterns {
        assert!(
            !pattern.contains(['*', '?', '[', '!']),
            ".dockerignore pattern {pattern:?} needs glob matching, which this test does not do"
        );
    }
    patterns
}

/// Copies `from` (a file or a folder, relative to the context) to `to`,
/// leaving out what `.dockerignore` excludes, as `COPY` does.
fn copy_into(root: &std::path::Path, from: &str, to: &std::path::Path, ignored: &[String]) {
    let relative = from.trim_start_matches("./").trim_end_matches('/');
    if ignored
        .iter()
        .any(|p| relative == p || relative.starts_with(&format!("{p}/")))
    {
        return;
    }
    let source = root.join(relative);
    assert!(
        source.exists(),
        "COPY {from}: not in the build context (a clone of the repository)"
    );
    if source.is_dir() {
        std::fs::create_dir_all(to).expect("create a folder");
        for entry in std::fs::read_dir(&source).expect("read a folder") {
            let name = entry.expect("an entry").file_name();
            let name = name.to_string_lossy();
            copy_into(
                root,
                &format!("{relative}/{name}"),
                &to.join(&*name),
                ignored,
            );
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("create a folder");
        }
        std::fs::copy(&source, to).expect("copy a file");
    }
}

#[test]
fn cargo_builds_the_workspace_from_exactly_what_the_dockerfile_copies() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile =
        std::fs::read_to_string(root.join("docker/Dockerfile")).expect("docker/Dockerfile exists");
    let ignored = ignored_paths(root);
    let context = tempfile::tempdir().expect("a temporary directory");
    let work = context.path();
    // A target folder of its own, kept between runs: the dependencies are
    // checked once, later runs redo only the crate itself.
    let target = root.join("target/docker-context");
    let mut args: Vec<(String, String)> = Vec::new();
    let mut cargo_steps = 0;
    for (instruction, rest) in build_stage(&dockerfile) {
        match instruction.as_str() {
            "WORKDIR" => {}
            "ARG" => {
                let (name, default) = rest.split_once('=').unwrap_or((&rest, ""));
                // The image builds; here the same steps check (see the ARG).
                let value = if name == "CARGO_COMMAND" {
                    "check"
                } else {
                    default
                };
                args.push((name.to_owned(), value.to_owned()));
            }
            "COPY" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                assert!(
                    !parts.iter().any(|p| p.starts_with("--")),
                    "COPY with flags in the build stage: {rest}"
                );
                let (dest, sources) = parts.split_last().expect("COPY SRC... DEST");
                for source in sources {
                    let to = if dest.ends_with('/') || sources.len() > 1 {
                        let name = std::path::Path::new(source)
                            .file_name()
                            .expect("a file name");
                        work.join(dest).join(name)
                    } else {
                        work.join(dest)
                    };
                    copy_into(root, source, &to, &ignored);
                }
            }
            "RUN" => {
                if rest.contains("cargo") {
                    cargo_steps += 1;
                    let metadata = Command::new(env!("CARGO"))
                        .args(["metadata", "--offline", "--locked", "--format-version", "1"])
                        .current_dir(work)
                        .output()
                        .expect("run cargo metadata");
                    assert!(
                        metadata.status.success(),
                        "cargo metadata fails on the context before `RUN {rest}`:\n{}",
                        String::from_utf8_lossy(&metadata.stderr)
                    );
                }
                let run = Command::new("sh")
                    .args(["-c", &rest])
                    .current_dir(work)
                    .envs(args.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .env("CARGO_TARGET_DIR", &target)
                    .env("CARGO_NET_OFFLINE", "true")
                    .output()
                    .expect("run a RUN step");
                assert!(
                    run.status.success(),
                    "`RUN {rest}` fails on the build context:\n{}",
                    String::from_utf8_lossy(&run.stderr)
                );
            }
            "ENV" | "LABEL" | "USER" | "EXPOSE" => {}
            other => panic!("the build stage uses {other}, which this test does not replay"),
        }
    }
    assert_eq!(
        cargo_steps, 2,
        "the dependencies build in their own layer, then the sources"
    );
}
