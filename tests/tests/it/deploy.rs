//! `docker-compose.yml`, `deploy/k8s/` and the `Dockerfile` cannot be run here (no container
//! engine), so they are parsed and cross-checked against each service's real `Config`: every
//! environment variable they set is one the service reads, every setting the service requires
//! is set, and ports, probes, selectors and config/secret references agree. The Kubernetes
//! overlays are rendered and schema-validated first: [`kubernetes`]. The Prometheus rules,
//! scrape config, Grafana dashboard and the compose `observability` profile: [`observability`].

mod kubernetes;
mod observability;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use serde_norway::Value;

/// The path of a tool from its `scripts/ensure-*.sh` (kubectl, promtool,
/// check-jsonschema, …), or from `env` when set; the script's message is the
/// failure when it cannot provide one.
fn tool(script: &str, env: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        return PathBuf::from(bin);
    }
    let output = std::process::Command::new(repo_root().join("scripts").join(script))
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    assert!(output.status.success(), "scripts/{script} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repo").to_path_buf()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// The env vars a service's `Config` reads, and those it requires (no default).
struct ServiceEnv {
    all: BTreeSet<String>,
    required: BTreeSet<String>,
}

fn service_env(command: clap::Command) -> ServiceEnv {
    let mut all = BTreeSet::new();
    let mut required = BTreeSet::new();
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let name = env.to_string_lossy().into_owned();
        if arg.is_required_set() && arg.get_default_values().is_empty() {
            required.insert(name.clone());
        }
        all.insert(name);
    }
    ServiceEnv { all, required }
}

/// Service name (as in compose and `sb-<name>` in Kubernetes) → its configuration.
fn services() -> BTreeMap<&'static str, ServiceEnv> {
    BTreeMap::from([
        ("auth", service_env(sb_auth::Config::command())),
        ("messaging", service_env(sb_messaging::Config::command())),
        ("presence", service_env(sb_presence::Config::command())),
        ("edge", service_env(sb_edge::Config::command())),
    ])
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {addr}"))
}

fn str_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

#[test]
fn compose_services_set_exactly_what_they_read() {
    let mut compose: Value = serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses");
    compose.apply_merge().expect("merge keys resolve");
    let declared = &compose["services"];
    for (name, env) in services() {
        let service = &declared[name];
        assert!(service.is_mapping(), "compose has no service {name}");
        assert!(
            service["build"]["target"].as_str() == Some(&format!("sb-{name}")),
            "{name} builds its Dockerfile target"
        );
        let environment = service["environment"].as_mapping().unwrap_or_else(|| panic!("{name} has an environment"));
        let set: BTreeSet<String> = environment.keys().map(str_of).collect();
        let unknown: Vec<_> = set.difference(&env.all).collect();
        assert!(unknown.is_empty(), "compose sets env vars {name} does not read: {unknown:?}");
        let missing: Vec<_> = env.required.difference(&set).collect();
        assert!(missing.is_empty(), "compose leaves required settings of {name} unset: {missing:?}");
        for (key, value) in environment {
            let (key, value) = (str_of(key), str_of(value));
            if key == "NATS_URL" {
                assert!(value.contains("nats:4222"), "{name} talks to the compose NATS");
            }
            if key == "AUTH_ADDR" {
                assert!(value.contains("auth:50051"), "{name} talks to the compose auth");
            }
            if key.ends_with("_ADDR") && key != "AUTH_ADDR" && key != "METRICS_ADDR" {
                let port = port_of(&value);
                let published = service["ports"]
                    .as_sequence()
                    .map(|ports| ports.iter().any(|p| str_of(p).ends_with(&format!(":{port}"))));
                assert_eq!(published, Some(true), "{name} publishes its port {port}");
            }
        }
        let depends = service["depends_on"].as_mapping().expect("depends_on");
        assert!(depends.contains_key("nats"), "{name} waits for NATS");
        for (on, how) in depends {
            assert_eq!(
                str_of(&how["condition"]),
                "service_healthy",
                "{name} waits for {} to be healthy, not just started",
                str_of(on)
            );
        }
        // The runtime image has no curl: the health check is the binary's own
        // `healthcheck` subcommand, which reads the same settings as the service.
        let test: Vec<String> = service["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name} has a healthcheck"))
            .iter()
            .map(str_of)
            .collect();
        assert_eq!(test, ["CMD".to_owned(), format!("/usr/local/bin/sb-{name}"), "healthcheck".to_owned()], "{name}");
    }
    for infra in ["nats", "postgres", "jaeger"] {
        assert!(declared[infra].is_mapping(), "compose runs {infra}");
    }
    assert!(str_of(&declared["nats"]["command"][0]) == "-js", "NATS runs with JetStream");
    let init = read("deploy/compose/postgres-init.sql");
    for name in ["auth", "messaging"] {
        let url = str_of(&declared[name]["environment"]["DATABASE_URL"]);
        let database = url.rsplit('/').next().expect("database name");
        assert!(init.contains(&format!("CREATE DATABASE {database};")), "postgres-init.sql creates {database}");
    }
}

#[test]
fn dockerfile_builds_every_service() {
    let dockerfile = read("Dockerfile");
    for name in services().keys() {
        assert!(dockerfile.contains(&format!("AS sb-{name}")), "Dockerfile has a target sb-{name}");
        assert!(dockerfile.contains(&format!("-p sb-{name}")), "Dockerfile builds sb-{name}");
    }
}
