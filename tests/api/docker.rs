//! The Compose file parses and wires the services as documented. (No Docker
//! engine runs where the tests run; this checks what can be checked.)

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
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/.env.example");
    let env = std::fs::read_to_string(example).expect("docker/.env.example exists");
    assert!(env.contains("SWITCHBOARD__AUTH__API_KEY"));
}
