//! `docker-compose.yml`, `deploy/k8s/` and the `Dockerfile` cannot be run here (no container
//! engine), so they are parsed and cross-checked against each service's real `Config`: every
//! environment variable they set is one the service reads, every setting the service requires
//! is set, and ports, probes, selectors and config/secret references agree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use serde_norway::Value;

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

fn k8s_documents() -> Vec<(String, Value)> {
    let kustomization: Value = serde_norway::from_str(&read("deploy/k8s/kustomization.yaml")).expect("kustomization");
    let mut documents = Vec::new();
    for resource in kustomization["resources"].as_sequence().expect("resources") {
        let file = str_of(resource);
        let text = read(&format!("deploy/k8s/{file}"));
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).unwrap_or_else(|e| panic!("{file} parses: {e}"));
            if !value.is_null() {
                documents.push((file.clone(), value));
            }
        }
    }
    documents
}

use serde::Deserialize as _;

#[test]
fn kubernetes_manifests_agree_with_the_services() {
    let documents = k8s_documents();
    let find = |kind: &str, name: &str| -> &Value {
        documents
            .iter()
            .map(|(_, d)| d)
            .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
    };
    let config_map = find("ConfigMap", "switchboard-config");
    let secret = find("Secret", "switchboard-secrets");
    for (name, env) in services() {
        let full = format!("sb-{name}");
        let deployment = find("Deployment", &full);
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (key, value) in deployment["spec"]["selector"]["matchLabels"].as_mapping().expect("selector") {
            assert_eq!(&labels[key.as_str().expect("label key")], value, "{full}'s selector matches its pods");
        }
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"].as_str(), Some(format!("switchboard/{full}").as_str()));
        let mut set = BTreeSet::new();
        for var in container["env"].as_sequence().expect("env") {
            let var_name = str_of(&var["name"]);
            if let Some(key) = var["valueFrom"]["configMapKeyRef"]["key"].as_str() {
                assert!(!config_map["data"][key].is_null(), "{full} reads ConfigMap key {key}, which is missing");
            }
            if let Some(key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
                assert!(!secret["stringData"][key].is_null(), "{full} reads Secret key {key}, which is missing");
            }
            if var_name.ends_with("_ADDR") && var_name != "AUTH_ADDR" {
                let port = port_of(var["value"].as_str().expect("listen addresses are literal"));
                let declared = container["ports"]
                    .as_sequence()
                    .expect("ports")
                    .iter()
                    .any(|p| p["containerPort"].as_u64() == Some(u64::from(port)));
                assert!(declared, "{full} declares containerPort {port} for {var_name}");
            }
            set.insert(var_name);
        }
        let unknown: Vec<_> = set.difference(&env.all).collect();
        assert!(unknown.is_empty(), "{full} sets env vars it does not read: {unknown:?}");
        let missing: Vec<_> = env.required.difference(&set).collect();
        assert!(missing.is_empty(), "{full} leaves required settings unset: {missing:?}");
        assert!(container["readinessProbe"].is_mapping(), "{full} has a readiness probe");
        assert!(container["livenessProbe"].is_mapping(), "{full} has a liveness probe");
        assert!(container["resources"]["requests"].is_mapping(), "{full} requests resources");

        let service = find("Service", &full);
        let port_names: BTreeSet<String> =
            container["ports"].as_sequence().expect("ports").iter().map(|p| str_of(&p["name"])).collect();
        for port in service["spec"]["ports"].as_sequence().expect("service ports") {
            let target = str_of(&port["targetPort"]);
            assert!(port_names.contains(&target), "Service {full} targets port {target}, which the pod does not name");
        }
        assert_eq!(&service["spec"]["selector"], &deployment["spec"]["selector"]["matchLabels"]);
        find("PodDisruptionBudget", &full);
    }
    let edge = find("Deployment", "sb-edge");
    let edge_env = &edge["spec"]["template"]["spec"]["containers"][0]["env"];
    let edge_id = edge_env.as_sequence().expect("env").iter().find(|v| v["name"].as_str() == Some("EDGE_ID"));
    assert_eq!(
        edge_id.map(|v| &v["valueFrom"]["fieldRef"]["fieldPath"]).and_then(Value::as_str),
        Some("metadata.name"),
        "each edge pod has its own EDGE_ID"
    );
}

#[test]
fn dockerfile_builds_every_service() {
    let dockerfile = read("Dockerfile");
    for name in services().keys() {
        assert!(dockerfile.contains(&format!("AS sb-{name}")), "Dockerfile has a target sb-{name}");
        assert!(dockerfile.contains(&format!("-p sb-{name}")), "Dockerfile builds sb-{name}");
    }
}
