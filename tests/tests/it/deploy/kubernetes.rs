//! `deploy/k8s/`, checked like code. Every overlay is rendered with `kubectl kustomize`
//! (`scripts/ensure-kubectl.sh`), every object is validated offline against the Kubernetes
//! JSON schemas of [`SCHEMA_VERSIONS`] (`kubernetes-validate`, installed by
//! `scripts/ensure-kubernetes-validate.sh`), and then what schemas cannot see is checked
//! against the services themselves: images, env var names (each service's clap `Config`),
//! listen ports, probes (the routes `libs/service` serves), grace periods against the
//! settings they must outlast, Secrets only referenced, PDBs and resources in production,
//! and the NATS cluster's configuration against its StatefulSet (and `nats-server -t`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize as _;
use serde_norway::Value;

use super::{port_of, read, repo_root, services, str_of, tool};

/// Overlays that render a whole Switchboard instance, besides every folder of `teams/`.
const OVERLAYS: &[&str] = &["overlays/dev", "overlays/prod"];
/// The one instance that is not in production shape (PDBs, several replicas, no Secret objects).
const DEV: &str = "overlays/dev";
/// The platform's NATS JetStream cluster.
const NATS_CLUSTER: &str = "nats-cluster";
/// Kubernetes versions the renders must be valid for: the oldest supported (the edge's
/// `preStop` `sleep` action is 1.30) and a recent one.
const SCHEMA_VERSIONS: &[&str] = &["1.30.0", "1.35.0"];
/// Kinds defined by CRDs, which `kubernetes-validate` has no schema for; checked here instead.
const CRD_KINDS: &[&str] = &["ServiceMonitor"];
/// The only values a committed Secret may hold: the public dev defaults of the dev overlay
/// (the same as docker-compose.yml's) and SQLite paths (see [`secret_value_is_public`]).
const PUBLIC_DEV_VALUES: &[&str] = &["admin@example.com", "switchboard"];
/// What a grace period must leave after the stop it covers.
const GRACE_MARGIN: Duration = Duration::from_secs(5);

/// [`OVERLAYS`] and `teams/*`: a team added by copying `teams/team-a` is checked too.
fn instances() -> Vec<String> {
    let mut dirs: Vec<String> = OVERLAYS.iter().map(|dir| (*dir).to_owned()).collect();
    let teams = std::fs::read_dir(repo_root().join("deploy/k8s/teams")).expect("deploy/k8s/teams");
    let mut team_dirs: Vec<String> = teams
        .map(|entry| entry.expect("a teams/ entry"))
        .filter(|entry| entry.path().join("kustomization.yaml").is_file())
        .map(|entry| format!("teams/{}", entry.file_name().to_string_lossy()))
        .collect();
    team_dirs.sort();
    assert!(!team_dirs.is_empty(), "deploy/k8s/teams has the example team");
    dirs.extend(team_dirs);
    dirs
}

/// One overlay's `kubectl kustomize` output.
struct Rendered {
    dir: String,
    text: String,
    objects: Vec<Value>,
}

impl Rendered {
    fn of(dir: &str) -> Self {
        let kubectl = tool("ensure-kubectl.sh", "KUBECTL_BIN");
        let path = repo_root().join("deploy/k8s").join(dir);
        let output = Command::new(&kubectl)
            .arg("kustomize")
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("run {} kustomize: {e}", kubectl.display()));
        assert!(
            output.status.success(),
            "kubectl kustomize {dir} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("kustomize writes UTF-8");
        let objects = serde_norway::Deserializer::from_str(&text)
            .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{dir} renders YAML: {e}")))
            .filter(|value| !value.is_null())
            .collect();
        Self { dir: dir.to_owned(), text, objects }
    }

    fn all<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |object| object["kind"].as_str() == Some(kind))
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|object| object["kind"].as_str() == Some(kind) && object["metadata"]["name"].as_str() == Some(name))
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| panic!("{}: no {kind} {name}", self.dir))
    }

    /// The namespace every namespaced object is in (one per overlay).
    fn namespace(&self) -> String {
        let namespaces: BTreeSet<&str> =
            self.objects.iter().filter_map(|object| object["metadata"]["namespace"].as_str()).collect();
        assert_eq!(namespaces.len(), 1, "{}: one namespace for everything, got {namespaces:?}", self.dir);
        let namespace = namespaces.into_iter().next().expect("one namespace").to_owned();
        assert!(self.find("Namespace", &namespace).is_some(), "{}: creates its namespace {namespace}", self.dir);
        namespace
    }
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().expect("metadata.name")
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn duration(text: &str, what: &str) -> Duration {
    sb_config::parse_duration(text).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Where an env var's value comes from, resolved against the render.
#[derive(Debug)]
enum Source {
    Value(String),
    /// An optional ConfigMap key or Secret that is not there: the variable is unset.
    Unset,
    /// A Secret created outside git: its name and key.
    ExternalSecret(String, String),
    FieldRef(String),
}

fn resolve(rendered: &Rendered, owner: &str, var: &Value) -> Source {
    let var_name = str_of(&var["name"]);
    if !var["value"].is_null() {
        return Source::Value(str_of(&var["value"]));
    }
    let from = &var["valueFrom"];
    let optional = |reference: &Value| reference["optional"].as_bool() == Some(true);
    if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
        return Source::FieldRef(path.to_owned());
    }
    let reference = &from["configMapKeyRef"];
    if reference.is_mapping() {
        let (name, key) = (str_of(&reference["name"]), str_of(&reference["key"]));
        let config_map = rendered.get("ConfigMap", &name);
        return match &config_map["data"][key.as_str()] {
            Value::Null if optional(reference) => Source::Unset,
            Value::Null => {
                panic!("{}: {owner} reads ConfigMap {name} key {key} for {var_name}; it has none", rendered.dir)
            }
            value => Source::Value(str_of(value)),
        };
    }
    let reference = &from["secretKeyRef"];
    if reference.is_mapping() {
        let (name, key) = (str_of(&reference["name"]), str_of(&reference["key"]));
        let Some(secret) = rendered.find("Secret", &name) else {
            return Source::ExternalSecret(name, key);
        };
        let encoded = &secret["data"][key.as_str()];
        return match encoded.as_str() {
            None if optional(reference) => Source::Unset,
            None => panic!("{}: {owner} reads Secret {name} key {key} for {var_name}; it has none", rendered.dir),
            Some(encoded) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("Secret data is base64");
                Source::Value(String::from_utf8(bytes).expect("Secret value is UTF-8"))
            }
        };
    }
    panic!("{}: {owner} sets {var_name} from something this test does not know: {var:?}", rendered.dir)
}

/// The port number a probe or Service names (a number or a container port's name).
fn container_port(container: &Value, port: &Value) -> u16 {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).expect("a port number");
    }
    let name = str_of(port);
    seq(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name.as_str()))
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("container {} has no port named {name}", str_of(&container["name"])))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let Some(match_labels) = selector["matchLabels"].as_mapping() else { return false };
    match_labels.iter().all(|(key, value)| &labels[key.as_str().expect("label key")] == value)
}

/// The grace a pod needs: `preStop` sleep, then each duration setting that runs in turn.
fn needed_grace(container: &Value, env: &BTreeMap<String, Source>, settings: &[&str], what: &str) -> Duration {
    let mut needed = GRACE_MARGIN;
    if let Some(seconds) = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64() {
        needed += Duration::from_secs(seconds);
    }
    for setting in settings {
        match env.get(*setting) {
            Some(Source::Value(value)) => needed += duration(value, &format!("{what} {setting}")),
            other => panic!("{what} sets {setting} explicitly (its grace period depends on it), got {other:?}"),
        }
    }
    needed
}

/// The routes `libs/service`'s operations endpoint serves (`/healthz`, `/readyz`, `/metrics`).
fn ops_routes() -> BTreeSet<String> {
    let source = read("libs/service/src/ops.rs");
    let routes: BTreeSet<String> =
        source.split(".route(\"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect();
    assert!(
        routes.contains("/readyz") && routes.contains("/healthz"),
        "ops.rs serves /readyz and /healthz: {routes:?}"
    );
    routes
}

fn secret_value_is_public(value: &str) -> bool {
    PUBLIC_DEV_VALUES.contains(&value) || value.starts_with("sqlite:")
}

#[test]
fn every_overlay_renders_and_validates_against_the_kubernetes_schemas() {
    let validator = tool("ensure-kubernetes-validate.sh", "KUBERNETES_VALIDATE_BIN");
    let scratch = tempfile::tempdir().expect("temp dir");
    for dir in instances().iter().map(String::as_str).chain([NATS_CLUSTER]) {
        let rendered = Rendered::of(dir);
        assert!(!rendered.objects.is_empty(), "{dir} renders objects");
        let file = scratch.path().join(format!("{}.yaml", dir.replace('/', "-")));
        std::fs::write(&file, &rendered.text).expect("write the render");
        for version in SCHEMA_VERSIONS {
            let output = Command::new(&validator)
                .args(["--strict", "--quiet", "--kubernetes-version", version])
                .arg(&file)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", validator.display()));
            let report =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            assert!(output.status.success(), "{dir} is not valid Kubernetes {version}:\n{report}");
            for line in report.lines().filter(|line| !line.trim().is_empty()) {
                let known_crd = CRD_KINDS.iter().any(|kind| line.contains(&format!("schema for kind {kind} ")));
                assert!(known_crd, "{dir} against {version}: unexpected validator output: {line}");
            }
        }
        // What the schemas skip: the CRD objects' shape.
        for monitor in rendered.all("ServiceMonitor") {
            let name = name_of(monitor);
            let selected: Vec<&Value> = rendered
                .all("Service")
                .filter(|service| {
                    let labels = &service["metadata"]["labels"];
                    let selector = &monitor["spec"]["selector"];
                    let by_labels = selector["matchLabels"].is_mapping() && labels_match(selector, labels);
                    let by_expressions = seq(&selector["matchExpressions"]).iter().any(|expression| {
                        let value = &labels[expression["key"].as_str().expect("key")];
                        expression["operator"].as_str() == Some("In") && seq(&expression["values"]).contains(value)
                    });
                    by_labels || by_expressions
                })
                .collect();
            assert!(!selected.is_empty(), "{dir}: ServiceMonitor {name} selects no Service");
            for endpoint in seq(&monitor["spec"]["endpoints"]) {
                let port = str_of(&endpoint["port"]);
                for service in &selected {
                    let has = seq(&service["spec"]["ports"]).iter().any(|p| p["name"].as_str() == Some(port.as_str()));
                    assert!(
                        has,
                        "{dir}: ServiceMonitor {name} scrapes port {port}, which Service {} lacks",
                        name_of(service)
                    );
                }
                assert_eq!(
                    endpoint["path"].as_str(),
                    Some("/metrics"),
                    "{dir}: ServiceMonitor {name} scrapes /metrics"
                );
            }
        }
    }
}

#[test]
fn instances_agree_with_the_services() {
    let routes = ops_routes();
    let docs = read("docs/deploy.md");
    let nats_cluster = Rendered::of(NATS_CLUSTER);
    let edge_defaults = sb_edge::Config::for_tests("nats://unused:4222", "http://unused:50051");
    let renamed: BTreeSet<&str> =
        sb_edge::config::RENAMED.iter().chain(sb_auth::config::RENAMED).map(|(old, _)| *old).collect();
    for dir in instances() {
        let dir = dir.as_str();
        let rendered = Rendered::of(dir);
        let namespace = rendered.namespace();
        let production = dir != DEV;
        let mut grpc_ports = BTreeMap::new();
        let mut external_secrets = BTreeSet::new();

        for (service_name, service_env) in services() {
            let full = format!("sb-{service_name}");
            let what = format!("{dir}: {full}");
            let deployment = rendered.get("Deployment", &full);
            let pod = &deployment["spec"]["template"];
            assert!(
                labels_match(&deployment["spec"]["selector"], &pod["metadata"]["labels"]),
                "{what}'s selector matches its pods"
            );
            let containers = seq(&pod["spec"]["containers"]);
            assert_eq!(containers.len(), 1, "{what} runs one container");
            let container = &containers[0];
            let image = str_of(&container["image"]);
            let (repository, tag) = image.split_once(':').unwrap_or_else(|| panic!("{what}: image {image} has a tag"));
            assert_eq!(
                repository,
                format!("switchboard/{full}"),
                "{what} runs its own image (the Dockerfile's target)"
            );
            assert!(!tag.is_empty(), "{what}: image tag");

            // Env: every name one the service reads, none renamed, required ones set.
            let mut env = BTreeMap::new();
            for var in seq(&container["env"]) {
                let var_name = str_of(&var["name"]);
                assert!(!renamed.contains(var_name.as_str()), "{what} sets {var_name}, a name from before the rename");
                assert!(
                    service_env.all.contains(&var_name),
                    "{what} sets {var_name}, which {service_name} does not read"
                );
                let source = resolve(&rendered, &what, var);
                if let Source::ExternalSecret(name, key) = &source {
                    external_secrets.insert((name.clone(), key.clone()));
                }
                assert!(env.insert(var_name.clone(), source).is_none(), "{what} sets {var_name} twice");
            }
            let missing: Vec<_> = service_env.required.iter().filter(|name| !env.contains_key(*name)).collect();
            assert!(missing.is_empty(), "{what} leaves required settings unset: {missing:?}");
            for (var_name, source) in &env {
                let is_duration = ["_TIMEOUT", "_DURATION", "_TTL", "_WAIT", "_DELAY", "_WINDOW", "_INTERVAL"]
                    .iter()
                    .any(|suffix| var_name.ends_with(suffix));
                if let (true, Source::Value(value)) = (is_duration, source) {
                    duration(value, &format!("{what} {var_name}"));
                }
            }

            // Listen addresses are literal and declared as container ports.
            let listen_port = |var_name: &str| -> u16 {
                match env.get(var_name) {
                    Some(Source::Value(addr)) => port_of(addr),
                    other => panic!("{what} sets {var_name} literally, got {other:?}"),
                }
            };
            let declared: BTreeSet<u16> = seq(&container["ports"])
                .iter()
                .filter_map(|p| p["containerPort"].as_u64())
                .map(|p| u16::try_from(p).expect("port"))
                .collect();
            let (ops_port, serving_ports) = if service_name == "edge" {
                let port = listen_port("LISTEN_ADDR");
                (port, vec![port])
            } else {
                let grpc = listen_port("GRPC_ADDR");
                grpc_ports.insert(service_name, grpc);
                (listen_port("METRICS_ADDR"), vec![grpc, listen_port("METRICS_ADDR")])
            };
            assert_eq!(
                declared,
                serving_ports.iter().copied().collect(),
                "{what} declares exactly the ports it listens on"
            );

            // Probes: the ops endpoint's real routes on the port that serves them.
            for (probe, path) in
                [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")]
            {
                let get = &container[probe]["httpGet"];
                assert_eq!(get["path"].as_str(), Some(path), "{what}'s {probe} asks {path}");
                assert!(routes.contains(path), "{what}'s {probe}: {path} is not a route of libs/service/src/ops.rs");
                assert_eq!(container_port(container, &get["port"]), ops_port, "{what}'s {probe} asks the ops port");
            }

            // The grace period outlasts the stop it covers.
            let pod_spec = &pod["spec"];
            let grace = Duration::from_secs(pod_spec["terminationGracePeriodSeconds"].as_u64().expect("grace"));
            // SHUTDOWN_TIMEOUT bounds the whole stop; the edge's drain runs inside it, and the
            // edge refuses to start unless SHUTDOWN_TIMEOUT > DRAIN_DURATION + 5 s.
            let stop_settings: &[&str] = &["SHUTDOWN_TIMEOUT"];
            if service_name == "edge" {
                let setting = |name: &str| match env.get(name) {
                    Some(Source::Value(value)) => sb_config::parse_duration(value).expect("a duration"),
                    _ => panic!("{what} sets {name}"),
                };
                assert!(
                    setting("SHUTDOWN_TIMEOUT") > setting("DRAIN_DURATION") + Duration::from_secs(5),
                    "{what}: SHUTDOWN_TIMEOUT must exceed DRAIN_DURATION + 5 s, or the edge refuses to start"
                );
            }
            let needed = needed_grace(container, &env, stop_settings, &what);
            assert!(
                grace >= needed,
                "{what}: terminationGracePeriodSeconds {grace:?} < preStop + {stop_settings:?} + margin = {needed:?}"
            );

            // Addresses of the other parts.
            if let Some(Source::Value(auth_addr)) = env.get("AUTH_ADDR") {
                let host = auth_addr.trim_start_matches("http://").split(':').next().unwrap_or_default();
                assert!(
                    host == "sb-auth" || host == format!("sb-auth.{namespace}.svc.cluster.local"),
                    "{what}: AUTH_ADDR {auth_addr} is the auth Service of namespace {namespace}"
                );
                assert_eq!(port_of(auth_addr), 50051, "{what}: AUTH_ADDR port is auth's GRPC_ADDR port");
            }
            let Some(Source::Value(nats_url)) = env.get("NATS_URL") else { panic!("{what} sets NATS_URL") };
            for url in nats_url.split(',') {
                check_nats_url(&rendered, &nats_cluster, url.trim(), &what);
            }
            if let Some(Source::Value(creds)) = env.get("NATS_CREDS_FILE") {
                check_file_from_secret(pod_spec, container, creds, &what);
            }

            if service_name == "edge" {
                let edge_id = env.get("EDGE_ID");
                assert!(
                    matches!(edge_id, Some(Source::FieldRef(path)) if path == "metadata.name"),
                    "{what}: each edge pod has its own EDGE_ID (its pod name), got {edge_id:?}"
                );
            }

            // Services: a Service of the same name, targeting named pod ports.
            let service = rendered.get("Service", &full);
            assert_eq!(
                &service["spec"]["selector"], &deployment["spec"]["selector"]["matchLabels"],
                "{what}: Service selector"
            );
            for port in seq(&service["spec"]["ports"]) {
                container_port(container, &port["targetPort"]);
            }

            if production {
                let pdb = rendered
                    .all("PodDisruptionBudget")
                    .find(|pdb| labels_match(&pdb["spec"]["selector"], &pod["metadata"]["labels"]))
                    .unwrap_or_else(|| panic!("{what} has a PodDisruptionBudget"));
                assert!(
                    pdb["spec"]["minAvailable"].is_null() != pdb["spec"]["maxUnavailable"].is_null(),
                    "{what}: PDB"
                );
                let anti = &pod_spec["affinity"]["podAntiAffinity"];
                assert!(anti.is_mapping(), "{what} spreads its pods (anti-affinity)");
                let autoscaled = rendered.all("HorizontalPodAutoscaler").any(|hpa| {
                    hpa["spec"]["scaleTargetRef"]["name"].as_str() == Some(full.as_str())
                        && hpa["spec"]["scaleTargetRef"]["kind"].as_str() == Some("Deployment")
                });
                if autoscaled {
                    assert!(
                        deployment["spec"]["replicas"].is_null(),
                        "{what}: the HPA owns replicas; the manifest sets none"
                    );
                } else {
                    assert!(deployment["spec"]["replicas"].as_u64() >= Some(2), "{what} runs at least 2 replicas");
                }
                assert_eq!(service_name == "edge", autoscaled, "{what}: only the edge is autoscaled");
                assert!(
                    !matches!(env.get("DATABASE_URL"), Some(Source::Value(_))),
                    "{what}: database URL from a Secret"
                );
            } else {
                assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1), "{what}: one replica in dev");
                if let Some(Source::Value(url)) = env.get("DATABASE_URL") {
                    assert!(url.starts_with("sqlite:/var/lib/switchboard/"), "{what}: SQLite on its volume, got {url}");
                    assert_eq!(
                        deployment["spec"]["strategy"]["type"].as_str(),
                        Some("Recreate"),
                        "{what}: one SQLite writer"
                    );
                    let on_volume =
                        seq(&container["volumeMounts"]).iter().any(|m| m["mountPath"] == "/var/lib/switchboard");
                    assert!(on_volume, "{what}: the SQLite file is on a volume (the root filesystem is read-only)");
                }
            }
        }

        for workload in rendered.all("Deployment").chain(rendered.all("StatefulSet")) {
            check_pod_security(&format!("{dir}: {}", name_of(workload)), &workload["spec"]["template"]["spec"]);
        }

        // The edge: its own pod name as EDGE_ID, the Ingress, the HPA's metrics.
        let edge = rendered.get("Deployment", "sb-edge");
        let edge_container = &edge["spec"]["template"]["spec"]["containers"][0];
        check_ingress(&rendered, &edge_defaults);
        for hpa in rendered.all("HorizontalPodAutoscaler") {
            for metric in seq(&hpa["spec"]["metrics"]) {
                if let Some(name) = metric["pods"]["metric"]["name"].as_str() {
                    let source = read("services/edge/src/metrics.rs");
                    let short = name
                        .strip_prefix("switchboard_edge_")
                        .unwrap_or_else(|| panic!("{dir}: HPA metric {name} is the edge's"));
                    assert!(
                        source.contains(&format!("register(\"{short}\"")),
                        "{dir}: the edge exports no metric {name}"
                    );
                }
            }
        }

        check_network_policies(&rendered, &grpc_ports, container_port(edge_container, &Value::from("http")));

        // Secrets: only referenced in production; public dev values only in dev.
        for secret in rendered.all("Secret") {
            assert!(
                !production,
                "{dir} commits Secret {}: production Secrets are created outside git",
                name_of(secret)
            );
            for (key, value) in secret["data"].as_mapping().into_iter().flatten() {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD.decode(str_of(value)).expect("base64");
                let value = String::from_utf8(bytes).expect("UTF-8");
                assert!(
                    secret_value_is_public(&value),
                    "{dir}: Secret {} key {} holds a non-public value",
                    name_of(secret),
                    str_of(key)
                );
            }
            assert!(secret["stringData"].is_null(), "{dir}: Secrets come from generators only");
        }
        for (name, key) in &external_secrets {
            assert!(
                docs.contains(name.as_str()) && docs.contains(key.as_str()),
                "{dir} reads Secret {name} key {key}: docs/deploy.md must say how to create it"
            );
        }
        if production {
            let secret_volumes = rendered
                .all("Deployment")
                .flat_map(|d| seq(&d["spec"]["template"]["spec"]["volumes"]).iter())
                .filter_map(|v| v["secret"]["secretName"].as_str());
            for name in secret_volumes {
                assert!(docs.contains(name), "{dir} mounts Secret {name}: docs/deploy.md must say how to create it");
            }
        }
    }
}

/// Non-root, read-only root, no capabilities, no API token, and resources, for every container.
fn check_pod_security(what: &str, pod_spec: &Value) {
    assert_eq!(pod_spec["automountServiceAccountToken"].as_bool(), Some(false), "{what}: no service account token");
    assert_eq!(pod_spec["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{what}: runAsNonRoot");
    assert_eq!(
        pod_spec["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault"),
        "{what}: seccomp"
    );
    for container in seq(&pod_spec["containers"]).iter().chain(seq(&pod_spec["initContainers"])) {
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true), "{what}: read-only root filesystem");
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false), "{what}: no privilege escalation");
        assert!(seq(&security["capabilities"]["drop"]).iter().any(|c| c == "ALL"), "{what}: drops ALL capabilities");
        let resources = &container["resources"];
        for field in ["cpu", "memory"] {
            assert!(!resources["requests"][field].is_null(), "{what} requests {field}");
        }
        assert!(!resources["limits"]["memory"].is_null(), "{what} has a memory limit");
    }
}

/// A NATS URL points at the dev overlay's own `nats` Service or at the platform cluster.
fn check_nats_url(rendered: &Rendered, cluster: &Rendered, url: &str, what: &str) {
    let rest =
        url.strip_prefix("nats://").or_else(|| url.strip_prefix("tls://")).unwrap_or_else(|| panic!("{what}: {url}"));
    let (host, port) = rest.rsplit_once(':').unwrap_or_else(|| panic!("{what}: {url} names its port"));
    let port: u16 = port.parse().expect("port");
    let labels: Vec<&str> = host.split('.').collect();
    let (services_of, service_name, pod) = match labels.as_slice() {
        [service] => (rendered, *service, None),
        [service, namespace, "svc", "cluster", "local"] => {
            assert_eq!(*namespace, cluster.namespace(), "{what}: {url} is in the NATS cluster's namespace");
            (cluster, *service, None)
        }
        [pod, service, namespace, "svc", "cluster", "local"] => {
            assert_eq!(*namespace, cluster.namespace(), "{what}: {url} is in the NATS cluster's namespace");
            (cluster, *service, Some(*pod))
        }
        _ => panic!("{what}: NATS URL {url} is neither an in-namespace Service nor the platform cluster"),
    };
    let service = services_of.get("Service", service_name);
    let serves = seq(&service["spec"]["ports"]).iter().any(|p| p["port"].as_u64() == Some(u64::from(port)));
    assert!(serves, "{what}: Service {service_name} has no port {port} ({url})");
    if let Some(pod) = pod {
        let statefulset = cluster.get("StatefulSet", "nats");
        assert_eq!(
            statefulset["spec"]["serviceName"].as_str(),
            Some(service_name),
            "{what}: {url} uses the governing Service"
        );
        let replicas = statefulset["spec"]["replicas"].as_u64().expect("replicas");
        let ordinal: u64 = pod.strip_prefix("nats-").and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
        assert!(ordinal < replicas, "{what}: {url} names a pod the StatefulSet does not have");
    }
}

/// A `*_FILE` setting names a file that a Secret volume puts there.
fn check_file_from_secret(pod_spec: &Value, container: &Value, file: &str, what: &str) {
    let (dir, file_name) = file.rsplit_once('/').expect("an absolute path");
    let mount = seq(&container["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .unwrap_or_else(|| panic!("{what}: nothing is mounted at {dir} for {file}"));
    let volume = seq(&pod_spec["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{what}: no volume {:?}", mount["name"]));
    let items = seq(&volume["secret"]["items"]);
    assert!(
        items.iter().any(|item| item["path"].as_str() == Some(file_name)),
        "{what}: the Secret volume holds {file_name}"
    );
}

fn check_ingress(rendered: &Rendered, edge_defaults: &sb_edge::Config) {
    let dir = &rendered.dir;
    let ingress = rendered.get("Ingress", "sb-edge");
    let annotations = &ingress["metadata"]["annotations"];
    let idle = edge_defaults.ping_interval + edge_defaults.ping_timeout;
    for timeout in ["proxy-read-timeout", "proxy-send-timeout"] {
        let value = str_of(&annotations[format!("nginx.ingress.kubernetes.io/{timeout}").as_str()]);
        let seconds: u64 = value.parse().unwrap_or_else(|_| panic!("{dir}: {timeout} {value} is seconds"));
        assert!(Duration::from_secs(seconds) > idle, "{dir}: {timeout} outlasts the Engine.IO ping ({idle:?})");
    }
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/affinity"].as_str(),
        Some("cookie"),
        "{dir}: long-polling affinity"
    );
    let mut paths = BTreeSet::new();
    for rule in seq(&ingress["spec"]["rules"]) {
        assert!(rule["host"].as_str().is_some_and(|host| !host.contains('*')), "{dir}: the Ingress names its host");
        for path in seq(&rule["http"]["paths"]) {
            let backend = &path["backend"]["service"];
            assert_eq!(backend["name"].as_str(), Some("sb-edge"), "{dir}: the Ingress sends to the edge only");
            let service = rendered.get("Service", "sb-edge");
            let port = str_of(&backend["port"]["name"]);
            assert!(
                seq(&service["spec"]["ports"]).iter().any(|p| p["name"] == port.as_str()),
                "{dir}: Ingress port {port}"
            );
            paths.insert(str_of(&path["path"]));
        }
    }
    let public: BTreeSet<String> = ["/socket.io/", "/auth/login"].map(str::to_owned).into();
    assert_eq!(paths, public, "{dir}: only Socket.IO and the login are public (not /metrics)");
}

fn check_network_policies(rendered: &Rendered, grpc_ports: &BTreeMap<&str, u16>, edge_port: u16) {
    let dir = &rendered.dir;
    let policies: Vec<&Value> = rendered.all("NetworkPolicy").collect();
    let default_deny = policies.iter().any(|p| {
        p["spec"]["podSelector"].as_mapping().is_some_and(|m| m.is_empty())
            && seq(&p["spec"]["policyTypes"]).iter().any(|t| t == "Ingress")
            && p["spec"]["ingress"].is_null()
    });
    assert!(default_deny, "{dir}: a default-deny ingress policy");
    let ports_of = |policy: &Value| -> BTreeSet<u16> {
        seq(&policy["spec"]["ingress"])
            .iter()
            .flat_map(|rule| seq(&rule["ports"]).iter())
            .filter_map(|p| p["port"].as_u64())
            .map(|p| u16::try_from(p).expect("port"))
            .collect()
    };
    let from_ingress = rendered.get("NetworkPolicy", "sb-edge-from-ingress");
    assert_eq!(
        ports_of(from_ingress),
        BTreeSet::from([edge_port]),
        "{dir}: the ingress controller reaches the edge's port"
    );
    for rule in seq(&from_ingress["spec"]["ingress"]) {
        for peer in seq(&rule["from"]) {
            assert!(
                peer["namespaceSelector"].is_mapping() && peer["podSelector"].is_null(),
                "{dir}: edge from the ingress namespace"
            );
        }
    }
    // Only the edge takes traffic from outside the instance (monitoring aside).
    for policy in &policies {
        let name = name_of(policy);
        if name == "sb-edge-from-ingress" || name == "switchboard-metrics-from-monitoring" {
            continue;
        }
        for rule in seq(&policy["spec"]["ingress"]) {
            for peer in seq(&rule["from"]) {
                assert!(
                    peer["namespaceSelector"].is_null() && peer["ipBlock"].is_null(),
                    "{dir}: {name} admits only this namespace's pods"
                );
            }
        }
    }
    let internal = rendered.get("NetworkPolicy", "switchboard-grpc-internal");
    let expected: BTreeSet<u16> = grpc_ports.values().copied().collect();
    assert_eq!(ports_of(internal), expected, "{dir}: the internal policy opens exactly the gRPC ports");
}

#[test]
fn nats_cluster_config_matches_its_statefulset_and_nats_server_accepts_it() {
    let rendered = Rendered::of(NATS_CLUSTER);
    let namespace = rendered.namespace();
    let statefulset = rendered.get("StatefulSet", "nats");
    let spec = &statefulset["spec"];
    let replicas = spec["replicas"].as_u64().expect("replicas");
    assert!(replicas >= 3 && replicas % 2 == 1, "an odd number of nodes, 3 or more (JetStream quorum)");
    let governing = str_of(&spec["serviceName"]);
    let headless = rendered.get("Service", &governing);
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"), "{governing} is headless");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"].as_bool(), Some(true), "routes resolve before readiness");
    assert_eq!(spec["podManagementPolicy"].as_str(), Some("Parallel"), "nodes start together");
    let pod_spec = &spec["template"]["spec"];
    let container = &pod_spec["containers"][0];
    check_pod_security("nats-cluster: nats", pod_spec);
    assert!(pod_spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_sequence());
    assert!(rendered.all("PodDisruptionBudget").any(|pdb| pdb["spec"]["maxUnavailable"].as_u64() == Some(1)));
    let image = str_of(&container["image"]);
    assert!(image.starts_with("nats:2.") && !image.ends_with(":latest"), "a pinned nats-server 2.x image: {image}");

    // The configuration file, from the ConfigMap the pod mounts.
    let args: Vec<String> = seq(&container["args"]).iter().map(str_of).collect();
    let config_path = args.windows(2).find(|w| w[0] == "--config").map(|w| w[1].clone()).expect("--config");
    let mounts = seq(&container["volumeMounts"]);
    let mount_of = |path: &str| -> &Value {
        mounts
            .iter()
            .filter(|m| path.starts_with(&format!("{}/", str_of(&m["mountPath"]))))
            .max_by_key(|m| str_of(&m["mountPath"]).len())
            .unwrap_or_else(|| panic!("nothing mounted for {path}"))
    };
    let volume_of = |mount: &Value| -> &Value {
        seq(&pod_spec["volumes"]).iter().find(|v| v["name"] == mount["name"]).expect("the mount's volume")
    };
    let config_mount = mount_of(&config_path);
    let config_map_name = str_of(&volume_of(config_mount)["configMap"]["name"]);
    let file_name = config_path.rsplit('/').next().expect("file name");
    let config = str_of(&rendered.get("ConfigMap", &config_map_name)["data"][file_name]);

    let setting = |key: &str| -> String {
        config
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(&format!("{key}:")))
            .map(|value| value.trim().trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("nats.conf sets {key}"))
    };
    let port_named = |name: &str| container_port(container, &Value::from(name));
    assert_eq!(port_of(&setting("listen")), port_named("client"), "client port");
    assert_eq!(port_of(&setting("http")), port_named("monitor"), "monitoring port");
    let routes: Vec<String> =
        config.lines().map(str::trim).filter(|line| line.starts_with("nats://")).map(str::to_owned).collect();
    let expected: Vec<String> = (0..replicas)
        .map(|i| format!("nats://nats-{i}.{governing}.{namespace}.svc.cluster.local:{}", port_named("cluster")))
        .collect();
    assert_eq!(routes, expected, "a route to every node of the StatefulSet");
    let cluster_listen = config.split("cluster {").nth(1).expect("a cluster block");
    let cluster_listen =
        cluster_listen.lines().map(str::trim).find_map(|l| l.strip_prefix("listen:")).expect("cluster listen");
    assert_eq!(port_of(cluster_listen.trim()), port_named("cluster"), "cluster port");
    assert!(
        seq(&container["env"])
            .iter()
            .any(|v| v["name"] == "POD_NAME" && v["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"),
        "server_name $POD_NAME comes from the pod"
    );

    // JetStream on the claim; the claim larger than the store's limit.
    let store_dir = setting("store_dir");
    let data_mount = mount_of(&store_dir);
    let claim = seq(&spec["volumeClaimTemplates"])
        .iter()
        .find(|c| c["metadata"]["name"] == data_mount["name"])
        .unwrap_or_else(|| panic!("{store_dir} is on a volumeClaimTemplate"));
    let gib = |text: &str| -> u64 {
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or_else(|_| panic!("a size: {text}"))
    };
    let claim_size = str_of(&claim["spec"]["resources"]["requests"]["storage"]);
    assert!(claim_size.ends_with("Gi") && setting("max_file_store").ends_with('G'), "sizes in G / Gi");
    assert!(gib(&setting("max_file_store")) < gib(&claim_size), "max_file_store fits the claim {claim_size}");
    assert!(mount_of(&setting("dir")).get("name") == data_mount.get("name"), "the account JWTs are on the claim too");

    // Lame duck mode (preStop) ends within the grace period.
    let grace = Duration::from_secs(pod_spec["terminationGracePeriodSeconds"].as_u64().expect("grace"));
    let lame_duck = duration(&setting("lame_duck_duration"), "lame_duck_duration")
        + duration(&setting("lame_duck_grace_period"), "lame_duck_grace_period");
    assert!(grace >= lame_duck + GRACE_MARGIN, "grace {grace:?} outlasts lame duck mode {lame_duck:?}");
    let pre_stop: Vec<String> = seq(&container["lifecycle"]["preStop"]["exec"]["command"]).iter().map(str_of).collect();
    let pid_file = setting("pid_file");
    assert!(pre_stop.iter().any(|arg| arg == &format!("ldm={pid_file}")), "preStop puts the server in lame duck mode");

    // nats-server itself parses the file, with a resolver.conf as the docs tell to make it
    // (`nsc generate config --nats-resolver`, without its resolver block) and the pod's paths
    // moved into a temp dir.
    let include = config.lines().map(str::trim).find_map(|l| l.strip_prefix("include ")).expect("include");
    let config_dir = std::path::Path::new(&config_path).parent().expect("config dir");
    let include_path = normalize(&config_dir.join(include.trim()));
    let resolver_mount = mount_of(&include_path);
    assert!(
        volume_of(resolver_mount)["secret"]["secretName"] == "nats-resolver",
        "resolver.conf from the nats-resolver Secret"
    );
    let docs = read("docs/deploy.md");
    assert!(
        docs.contains("nats-resolver") && docs.contains("nsc generate config --nats-resolver"),
        "docs/deploy.md: resolver.conf"
    );

    let scratch = tempfile::tempdir().expect("temp dir");
    let root = scratch.path().to_str().expect("UTF-8 temp dir");
    let moved = config.replace("/data/", &format!("{root}/data/")).replace("/var/run/nats/", &format!("{root}/run/"));
    let local_config = format!("{root}{config_path}");
    let local_include = format!("{root}{include_path}");
    for path in [&local_config, &local_include] {
        std::fs::create_dir_all(std::path::Path::new(path).parent().expect("dir")).expect("create dir");
    }
    std::fs::write(&local_config, moved).expect("write nats.conf");
    let mut operator = sb_tests::jwt::Operator::new("platform").expect("operator");
    operator.account("TEAM_A").expect("account");
    let resolver: String = operator
        .server_config()
        .lines()
        .filter(|line| !line.starts_with("resolver:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&local_include, resolver).expect("write resolver.conf");
    let output = Command::new(sb_tests::nats_server_binary())
        .args(["-t", "-c", &local_config])
        .env("POD_NAME", "nats-0")
        .output()
        .expect("run nats-server -t");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.contains("is valid"), "nats-server refuses nats.conf:\n{report}");
}

/// `a/b/../c` → `a/c` (the path nats-server resolves an include to).
fn normalize(path: &std::path::Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.to_str().expect("UTF-8 path").split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "." => {}
            part => parts.push(part),
        }
    }
    parts.join("/")
}
