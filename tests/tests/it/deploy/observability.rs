//! The observability files, checked like code: `deploy/grafana/switchboard.json` (the
//! dashboard), `deploy/prometheus/alerts.yaml` and `prometheus.yml`, the Grafana provisioning
//! files, and docker-compose.yml's `observability` profile that runs them.
//!
//! - Every PromQL expression names only metrics `docs/metrics.md` lists (histograms with their
//!   `_bucket`/`_sum`/`_count` series), or one of [`EXTERNAL_METRICS`], which are not ours and
//!   are each checked against where they come from.
//! - `promtool` (Debian's prometheus 2.42, `scripts/ensure-promtool.sh`) accepts the rules and
//!   the scrape config, and `promtool test rules` shows each alert firing, or not, on series
//!   written here.
//! - The dashboard is Grafana JSON with unique panel ids, every query on the `${datasource}`
//!   variable; the profile mounts files that exist where Prometheus and Grafana look for them,
//!   and scrapes the ports the services serve `/metrics` on.
//! - docker-compose.yml is valid against the Compose Specification's JSON schema, as shipped
//!   by PyPI's `check-jsonschema` (`scripts/ensure-check-jsonschema.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_norway::Value;

use super::{port_of, read, repo_root, str_of, tool};

const DASHBOARD: &str = "deploy/grafana/switchboard.json";
const ALERTS: &str = "deploy/prometheus/alerts.yaml";
const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const METRICS_DOC: &str = "docs/metrics.md";
/// The compose profile that runs Prometheus, Grafana and the NATS exporter.
const PROFILE: &str = "observability";
/// The Grafana variable every query's datasource is.
const DATASOURCE: &str = "${datasource}";

/// Metrics the dashboard and alerts may use that no Switchboard service exports, and where
/// each comes from. Each is checked in [`external_metrics_come_from_where_they_are_said_to`].
const EXTERNAL_METRICS: &[(&str, &str)] = &[
    ("up", "Prometheus itself: 1 for a target whose last scrape succeeded, 0 otherwise"),
    (
        "nats_consumer_num_pending",
        "prometheus-nats-exporter with `-prefix nats -jsz all`: a JetStream consumer's pending messages",
    ),
];

/// Metrics the dashboard must show (issue 10's list, as far as the services export it).
const ON_THE_DASHBOARD: &[&str] = &[
    "switchboard_edge_sockets",
    "switchboard_edge_connects_total",
    "switchboard_edge_connect_rejects_total",
    "switchboard_edge_events_total",
    "switchboard_edge_delivery_latency_seconds_bucket",
    "switchboard_edge_deliveries_total",
    "switchboard_edge_dropped_emits_total",
    "switchboard_edge_slow_disconnects_total",
    "nats_consumer_num_pending",
    "switchboard_messaging_batch_size_bucket",
    "switchboard_messaging_store_seconds_bucket",
    "switchboard_messaging_messages_redelivered_total",
    "switchboard_presence_users",
    "switchboard_presence_sockets",
    "switchboard_presence_rooms",
    "switchboard_presence_transitions_emitted_total",
    "switchboard_presence_lag",
    "switchboard_auth_verify_total",
    "switchboard_auth_verify_duration_seconds_bucket",
    "switchboard_edge_nats_connected",
    "switchboard_auth_nats_connected",
    "switchboard_presence_nats_connected",
    "switchboard_messaging_nats_connected",
];

/// Alerts issue 10 asks for; alerts.yaml may have more.
const REQUIRED_ALERTS: &[&str] = &[
    "SwitchboardEdgeNotReady",
    "SwitchboardIngestLagGrowing",
    "SwitchboardDeliveryLatencyHigh",
    "SwitchboardNatsDisconnected",
];

/// PromQL's functions (Prometheus 2.x), separated by spaces: the names that may be followed by `(`.
const FUNCTIONS: &str = "abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes \
    clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year \
    days_in_month deg delta deriv end exp floor histogram_count histogram_fraction \
    histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour \
    idelta increase irate label_join label_replace last_over_time ln log10 log2 \
    max_over_time min_over_time minute month pi predict_linear present_over_time \
    quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_desc sqrt start \
    stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year";
/// Aggregation operators: followed by `(`, or by `by (…)`/`without (…)` first.
const AGGREGATIONS: &str = "avg bottomk count count_values group max min quantile stddev stdvar sum topk";
/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
const OTHER_KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), report)
}

fn yaml(relative: &str) -> Value {
    let mut value: Value =
        serde_norway::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"));
    value.apply_merge().unwrap_or_else(|e| panic!("{relative}: merge keys: {e}"));
    value
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

/// The metrics `docs/metrics.md` lists (first column of its tables) with their type column.
fn documented_metrics() -> BTreeMap<String, String> {
    read(METRICS_DOC)
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let (name, rest) = rest.split_once('`')?;
            let kind = rest.trim_start_matches([' ', '|']).split('|').next()?.trim();
            name.starts_with("switchboard_").then(|| (name.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// Every series name an expression may use: documented metrics, each histogram's
/// `_bucket`/`_sum`/`_count`, and [`EXTERNAL_METRICS`].
fn allowed_series() -> BTreeSet<String> {
    let documented = documented_metrics();
    assert!(documented.len() > 40, "docs/metrics.md lists the metrics: {documented:?}");
    let mut allowed = BTreeSet::new();
    for (name, kind) in &documented {
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                allowed.insert(format!("{name}{suffix}"));
            }
        } else {
            allowed.insert(name.clone());
        }
    }
    allowed.extend(EXTERNAL_METRICS.iter().map(|(name, _)| (*name).to_owned()));
    allowed
}

/// The metric names a PromQL expression selects. Skips strings, label matchers (`{…}`),
/// ranges and subqueries (`[…]`), Grafana variables (`$x`, `${x}`), numbers and durations,
/// comments, keywords, and the label lists after `by`/`without`/`on`/`ignoring`/
/// `group_left`/`group_right`. A name followed by `(` must be a PromQL function or
/// aggregation, so a misspelt function is an error rather than a "metric".
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_string = |start: usize| -> Result<usize, String> {
        let quote = chars[start];
        let mut j = start + 1;
        while j < chars.len() {
            match chars[j] {
                '\\' if quote != '`' => j += 2,
                c if c == quote => return Ok(j + 1),
                _ => j += 1,
            }
        }
        Err(format!("unterminated string in {expr:?}"))
    };
    let skip_to = |start: usize, close: char| -> Result<usize, String> {
        let mut j = start + 1;
        while j < chars.len() {
            match chars[j] {
                '"' | '\'' | '`' => j = skip_string(j)?,
                c if c == close => return Ok(j + 1),
                _ => j += 1,
            }
        }
        Err(format!("no closing {close:?} in {expr:?}"))
    };
    let is_name_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(i)?,
            '{' => i = skip_to(i, '}')?,
            '[' => i = skip_to(i, ']')?,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '$' if chars.get(i + 1) == Some(&'{') => i = skip_to(i + 1, '}')?,
            '$' => {
                i += 1;
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if is_name_start(c) => {
                let start = i;
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let followed_by_paren = chars.get(next) == Some(&'(');
                let lower = name.to_ascii_lowercase();
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if followed_by_paren {
                        i = skip_to(next, ')')?;
                    }
                } else if AGGREGATIONS.split_whitespace().any(|aggregation| aggregation == lower)
                    || OTHER_KEYWORDS.contains(&lower.as_str())
                {
                    // An aggregation may be followed by `by (…)` before its `(`.
                } else if followed_by_paren {
                    if !FUNCTIONS.split_whitespace().any(|function| function == name) {
                        return Err(format!("{name}( is no PromQL function, in {expr:?}"));
                    }
                } else {
                    names.insert(name);
                }
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(panels: &'a serde_json::Value, into: &mut Vec<&'a serde_json::Value>) {
        for panel in panels.as_array().map(Vec::as_slice).unwrap_or(&[]) {
            into.push(panel);
            walk(&panel["panels"], into);
        }
    }
    let mut panels = Vec::new();
    walk(&dashboard["panels"], &mut panels);
    panels
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// (where, expression) for every query of the dashboard and every rule of alerts.yaml.
fn expressions() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for panel in all_panels(&dashboard()) {
        for target in panel["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let expr = target["expr"].as_str().unwrap_or_default().to_owned();
            found.push((format!("{DASHBOARD} panel {:?}", panel["title"].as_str().unwrap_or("?")), expr));
        }
    }
    for rule in alert_rules() {
        found.push((format!("{ALERTS} {}", str_of(&rule["alert"])), str_of(&rule["expr"])));
    }
    found
}

fn alert_rules() -> Vec<Value> {
    let alerts = yaml(ALERTS);
    let groups = seq(&alerts["groups"]);
    assert!(!groups.is_empty(), "{ALERTS} has rule groups");
    groups.iter().flat_map(|group| seq(&group["rules"]).iter().cloned()).collect()
}

/// GitHub's anchor for a Markdown heading: lowercase, spaces to `-`, punctuation dropped.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn compose_services() -> Value {
    yaml("docker-compose.yml")["services"].clone()
}

fn command_args(service: &Value) -> Vec<String> {
    seq(&service["command"]).iter().map(str_of).collect()
}

/// The value after `flag` in an argument list (`-flag value`), or in `--flag=value` form.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == flag {
            return args.get(i + 1).cloned();
        }
        arg.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')).map(str::to_owned)
    })
}

/// A compose service's bind mounts of repo files (`./path:/in/container[:ro]`): container path → repo path.
fn bind_mounts(service: &Value) -> BTreeMap<String, String> {
    seq(&service["volumes"])
        .iter()
        .map(str_of)
        .filter(|volume| volume.starts_with("./"))
        .map(|volume| {
            let mut parts = volume.split(':');
            let source = parts.next().expect("a source").trim_start_matches("./").to_owned();
            let target = parts.next().unwrap_or_else(|| panic!("{volume} names a target")).to_owned();
            (target, source)
        })
        .collect()
}

#[test]
fn the_metric_tokenizer_finds_metrics_and_only_metrics() {
    let expr = r#"histogram_quantile(0.99, sum by (le, instance) (rate(foo_seconds_bucket{job="a", reason=~"x y|z"}[$__rate_interval])))
        / on (instance) group_left (pod) bar_total offset 5m > 0.5 and ${datasource_fake} # a_comment_name
        or max without (le) (baz:recorded[10m:1m]) * -1e3"#;
    let names = metric_names(expr).expect("parses");
    let expected: BTreeSet<String> = ["foo_seconds_bucket", "bar_total", "baz:recorded"].map(str::to_owned).into();
    assert_eq!(names, expected);
    assert!(metric_names("sum(rtae(foo[5m]))").is_err(), "a misspelt function is an error");
    assert!(metric_names(r#"foo{a="}"#).is_err(), "an unterminated matcher is an error");
    // What the real test below does with a name that is not documented.
    let allowed = allowed_series();
    let bogus = metric_names("sum(rate(switchboard_edge_bogus_total[5m]))").expect("parses");
    assert!(bogus.iter().any(|name| !allowed.contains(name)), "an undocumented name is refused");
    let counter_without_total = metric_names("rate(switchboard_edge_connects[5m])").expect("parses");
    assert!(counter_without_total.iter().any(|name| !allowed.contains(name)), "counters keep `_total`");
    let counter_with_bucket = metric_names("switchboard_edge_connects_total_bucket").expect("parses");
    assert!(counter_with_bucket.iter().any(|name| !allowed.contains(name)), "only histograms have buckets");
}

#[test]
fn dashboard_and_alerts_name_only_documented_metrics() {
    let allowed = allowed_series();
    let expressions = expressions();
    assert!(expressions.len() > 30, "the dashboard and alerts have queries: {}", expressions.len());
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &expressions {
        if expr.trim().is_empty() {
            problems.push(format!("{place}: empty expression"));
            continue;
        }
        match metric_names(expr) {
            Ok(names) if names.is_empty() => problems.push(format!("{place}: names no metric: {expr}")),
            Ok(names) => {
                for name in names {
                    if !allowed.contains(&name) {
                        problems.push(format!("{place}: {name} is not in {METRICS_DOC} nor EXTERNAL_METRICS"));
                    }
                    used.insert(name);
                }
            }
            Err(error) => problems.push(format!("{place}: {error}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let on_dashboard: BTreeSet<String> = expressions
        .iter()
        .filter(|(place, _)| place.starts_with(DASHBOARD))
        .flat_map(|(_, expr)| metric_names(expr).expect("parsed above"))
        .collect();
    let missing: Vec<_> = ON_THE_DASHBOARD.iter().filter(|name| !on_dashboard.contains(**name)).collect();
    assert!(missing.is_empty(), "the dashboard does not show {missing:?}");
    for (name, _) in EXTERNAL_METRICS {
        assert!(used.contains(*name), "EXTERNAL_METRICS lists {name}, which nothing uses any more");
    }
}

#[test]
fn external_metrics_come_from_where_they_are_said_to() {
    let services = compose_services();
    let config = yaml(PROMETHEUS_CONFIG);
    let targets: BTreeMap<String, String> = seq(&config["scrape_configs"])
        .iter()
        .flat_map(|job| {
            let name = str_of(&job["job_name"]);
            seq(&job["static_configs"])
                .iter()
                .flat_map(|sc| seq(&sc["targets"]).iter().map(str_of).collect::<Vec<_>>())
                .map(move |target| (target, name.clone()))
        })
        .collect();
    for (name, source) in EXTERNAL_METRICS {
        match *name {
            // Prometheus writes `up` for each target it scrapes; alerts.yaml uses it per job.
            "up" => {
                let jobs: BTreeSet<&String> = targets.values().collect();
                for (_, expr) in expressions().iter().filter(|(_, expr)| expr.contains("up{")) {
                    let selected = expr.split("up{job").skip(1).filter_map(|rest| rest.split('"').nth(1));
                    for selector in selected {
                        for job in selector.split('|') {
                            assert!(
                                jobs.contains(&job.to_owned()),
                                "{expr}: no scrape job {job} in {PROMETHEUS_CONFIG}"
                            );
                        }
                    }
                }
            }
            // JetStream consumer state: the exporter of the observability profile, with the
            // prefix that gives this name, scraped by prometheus.yml; the queries select the
            // consumer and stream messaging really uses.
            "nats_consumer_num_pending" => {
                let exporter = services
                    .as_mapping()
                    .expect("compose services")
                    .values()
                    .find(|service| str_of(&service["image"]).starts_with("natsio/prometheus-nats-exporter:"))
                    .unwrap_or_else(|| panic!("compose runs no prometheus-nats-exporter for {name} ({source})"));
                let args = command_args(exporter);
                assert_eq!(flag_value(&args, "-prefix").as_deref(), Some("nats"), "{name} needs `-prefix nats`");
                assert!(
                    flag_value(&args, "-jsz").is_some_and(|v| v == "all" || v == "consumers"),
                    "{name} needs `-jsz all`: {args:?}"
                );
                let port = flag_value(&args, "-port").unwrap_or_else(|| "7777".to_owned());
                let service_name = services
                    .as_mapping()
                    .expect("compose services")
                    .iter()
                    .find(|(_, service)| *service == exporter)
                    .map(|(key, _)| str_of(key))
                    .expect("the exporter's name");
                let target = format!("{service_name}:{port}");
                assert!(targets.contains_key(&target), "{PROMETHEUS_CONFIG} scrapes the exporter at {target}");

                let stream = sb_events::Subjects::new("sb").expect("prefix").ingest_stream();
                let suffix = stream.strip_prefix("SB").expect("the stream name starts with the prefix");
                let consumer = format!("consumer_name=\"{}\"", sb_events::MESSAGING_CONSUMER);
                let stream_matcher = format!("stream_name=~\".+{suffix}\"");
                for (place, expr) in expressions().iter().filter(|(_, expr)| expr.contains(name)) {
                    for selector in expr.split(name).skip(1) {
                        let matchers = selector.split('}').next().unwrap_or_default();
                        assert!(
                            matchers.contains(&consumer) && matchers.contains(&stream_matcher),
                            "{place}: {name} selects messaging's consumer ({consumer}) of the ingest stream ({stream_matcher}): {expr}"
                        );
                    }
                }
                let doc = read(METRICS_DOC);
                assert!(
                    doc.contains(&format!("{name}{{stream_name=\"<P>{suffix}\"")),
                    "{METRICS_DOC} says where {name} comes from, with the ingest stream's name <P>{suffix}"
                );
            }
            other => panic!("EXTERNAL_METRICS has {other}, which this test does not know how to check"),
        }
    }
}

#[test]
fn every_alert_says_what_it_is_and_what_to_do() {
    let doc = read(METRICS_DOC);
    let section = doc
        .split("\n## Dashboard and alerts")
        .nth(1)
        .unwrap_or_else(|| panic!("{METRICS_DOC} has a section \"Dashboard and alerts\""));
    let anchors: BTreeSet<String> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("### ").or_else(|| line.strip_prefix("## ")))
        .map(anchor_of)
        .collect();
    let rules = alert_rules();
    let mut names = BTreeSet::new();
    for rule in &rules {
        let name = str_of(&rule["alert"]);
        assert!(names.insert(name.clone()), "alert {name} is defined twice");
        let duration = str_of(&rule["for"]);
        sb_config::parse_duration(&duration).unwrap_or_else(|e| panic!("{name}: `for: {duration}`: {e}"));
        let severity = str_of(&rule["labels"]["severity"]);
        assert!(["critical", "warning"].contains(&severity.as_str()), "{name}: severity {severity}");
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][key].as_str().is_some_and(|text| !text.trim().is_empty()),
                "{name} has a {key} annotation"
            );
        }
        let runbook = str_of(&rule["annotations"]["runbook_url"]);
        let (file, anchor) = runbook.split_once('#').unwrap_or_else(|| panic!("{name}: runbook_url file#section"));
        assert!(repo_root().join(file).is_file(), "{name}: runbook {file} exists");
        assert_eq!(file, METRICS_DOC, "{name}: runbooks are in {METRICS_DOC}");
        assert!(anchors.contains(anchor), "{name}: {METRICS_DOC} has a section #{anchor}");
        assert!(section.contains(&format!("### {name}")), "{METRICS_DOC} \"Dashboard and alerts\" explains {name}");
    }
    let missing: Vec<_> = REQUIRED_ALERTS.iter().filter(|name| !names.contains(**name)).collect();
    assert!(missing.is_empty(), "{ALERTS} lacks {missing:?}");
}

#[test]
fn promtool_accepts_the_rules_and_the_scrape_config() {
    let promtool = tool("ensure-promtool.sh", "PROMTOOL_BIN");
    let (ok, report) = run(Command::new(&promtool).args(["check", "rules"]).arg(repo_root().join(ALERTS)));
    assert!(ok, "promtool check rules {ALERTS}:\n{report}");
    // `check config` also loads the rule files it names, relative to the config.
    let (ok, report) = run(Command::new(&promtool).args(["check", "config"]).arg(repo_root().join(PROMETHEUS_CONFIG)));
    assert!(ok, "promtool check config {PROMETHEUS_CONFIG}:\n{report}");
    let rule_files: Vec<String> = seq(&yaml(PROMETHEUS_CONFIG)["rule_files"]).iter().map(str_of).collect();
    assert_eq!(rule_files, ["alerts.yaml"], "{PROMETHEUS_CONFIG} loads alerts.yaml");
}

/// `promtool test rules` cases: each alert fires on the series that should raise it, after
/// its `for:`, and stays quiet on healthy ones. The rules are tested without their
/// annotations (promtool compares them too, and their text is checked above).
const RULE_TESTS: &str = r#"
evaluation_interval: 15s
tests:
  # An edge that stops answering scrapes: not ready, and no edge is left.
  - interval: 15s
    input_series:
      - series: 'up{job="sb-edge", instance="edge:3000"}'
        values: '1x8 0x40'
      - series: 'switchboard_edge_nats_connected{job="sb-edge", instance="edge:3000"}'
        values: '1x8 stale'
      - series: 'switchboard_edge_draining{job="sb-edge", instance="edge:3000"}'
        values: '0x8 stale'
    alert_rule_test:
      - { eval_time: 3m, alertname: SwitchboardEdgeNotReady, exp_alerts: [] }
      - eval_time: 5m
        alertname: SwitchboardEdgeNotReady
        exp_alerts: [{ exp_labels: { severity: warning, service: edge, job: sb-edge, instance: "edge:3000" } }]
      - eval_time: 5m
        alertname: SwitchboardNoEdgeReady
        exp_alerts: [{ exp_labels: { severity: critical, service: edge } }]
  # One of two edges loses NATS; the other carries on.
  - interval: 15s
    input_series:
      - series: 'up{job="sb-edge", instance="edge-a:3000"}'
        values: '1x40'
      - series: 'up{job="sb-edge", instance="edge-b:3000"}'
        values: '1x40'
      - series: 'switchboard_edge_nats_connected{job="sb-edge", instance="edge-a:3000"}'
        values: '1x4 0x36'
      - series: 'switchboard_edge_nats_connected{job="sb-edge", instance="edge-b:3000"}'
        values: '1x40'
      - series: 'switchboard_edge_draining{job="sb-edge", instance="edge-a:3000"}'
        values: '0x40'
      - series: 'switchboard_edge_draining{job="sb-edge", instance="edge-b:3000"}'
        values: '0x40'
      - series: 'switchboard_auth_nats_connected{job="sb-auth", instance="auth:9101"}'
        values: '1x40'
    alert_rule_test:
      - eval_time: 4m
        alertname: SwitchboardNatsDisconnected
        exp_alerts: [{ exp_labels: { severity: critical, job: sb-edge, instance: "edge-a:3000" } }]
      - eval_time: 4m
        alertname: SwitchboardEdgeNotReady
        exp_alerts: [{ exp_labels: { severity: warning, service: edge, job: sb-edge, instance: "edge-a:3000" } }]
      - { eval_time: 4m, alertname: SwitchboardNoEdgeReady, exp_alerts: [] }
  # A drain as long as DRAIN_DURATION (30 s) is a rollout, not an alert.
  - interval: 15s
    input_series:
      - series: 'up{job="sb-edge", instance="edge:3000"}'
        values: '1x40'
      - series: 'switchboard_edge_nats_connected{job="sb-edge", instance="edge:3000"}'
        values: '1x40'
      - series: 'switchboard_edge_draining{job="sb-edge", instance="edge:3000"}'
        values: '0x4 1 1 0x34'
    alert_rule_test:
      - { eval_time: 5m, alertname: SwitchboardEdgeNotReady, exp_alerts: [] }
      - { eval_time: 5m, alertname: SwitchboardNoEdgeReady, exp_alerts: [] }
  # The ingest backlog: growing fires, a steady one and another consumer do not.
  - interval: 1m
    input_series:
      - series: 'nats_consumer_num_pending{stream_name="SB_MSG", consumer_name="messaging"}'
        values: '0+50x40'
      - series: 'nats_consumer_num_pending{stream_name="TEAM_A_MSG", consumer_name="messaging"}'
        values: '500x40'
      - series: 'nats_consumer_num_pending{stream_name="SB_PRESENCE", consumer_name="presence"}'
        values: '0+50x40'
    alert_rule_test:
      - { eval_time: 8m, alertname: SwitchboardIngestLagGrowing, exp_alerts: [] }
      - eval_time: 30m
        alertname: SwitchboardIngestLagGrowing
        exp_alerts: [{ exp_labels: { severity: warning, service: messaging, stream_name: SB_MSG, consumer_name: messaging } }]
  # Send → delivery: 10 deliveries/s between 0.512 and 1.024 s on edge-a fire; fast ones on
  # edge-b and slow ones below 1/s on edge-c do not.
  - interval: 1m
    input_series:
      - series: 'switchboard_edge_delivery_latency_seconds_bucket{job="sb-edge", instance="edge-a:3000", le="0.256"}'
        values: '0x30'
      - series: 'switchboard_edge_delivery_latency_seconds_bucket{job="sb-edge", instance="edge-a:3000", le="0.512"}'
        values: '0x30'
      - series: 'switchboard_edge_delivery_latency_seconds_bucket{job="sb-edge", instance="edge-a:3000", le="1.024"}'
        values: '0+600x30'
      - series: 'switchboard_edge_delivery_latency_seconds_bucket{job="sb-edge", instance="edge-a:3000", le="+Inf"}'
        values: '0+600x30'
      - series: 'switchboard_edge_delivery_latency_seconds_count{job="sb-edge", instance="edge-a:3000"}'
        values: '0+600x30'
      - series: 'switchboard_edge_delivery_latency_seconds_bucket{job="sb-edge", instance="edge-b:3000", le="0.008"}'
        values: '0+600x30'
      - series: 'switchboard_edge_delivery_latency_seconds_bucket{job="sb-edge", instance="edge-b:3000", le="0.512"}'
        values: '0+600x30'
      - series: 'switchboard_edge_delivery_latency_seconds_bucket{job="sb-edge", instance="edge-b:3000", le="+Inf"}'
        values: '0+600x30'
      - series: 'switchboard_edge_delivery_latency_seconds_count{job="sb-edge", instance="edge-b:3000"}'
        values: '0+600x30'
      - series: 'switchboard_edge_delivery_latency_seconds_bucket{job="sb-edge", instance="edge-c:3000", le="0.512"}'
        values: '0x30'
      - series: 'switchboard_edge_delivery_latency_seconds_bucket{job="sb-edge", instance="edge-c:3000", le="+Inf"}'
        values: '0+30x30'
      - series: 'switchboard_edge_delivery_latency_seconds_count{job="sb-edge", instance="edge-c:3000"}'
        values: '0+30x30'
    alert_rule_test:
      - { eval_time: 8m, alertname: SwitchboardDeliveryLatencyHigh, exp_alerts: [] }
      - eval_time: 20m
        alertname: SwitchboardDeliveryLatencyHigh
        exp_alerts: [{ exp_labels: { severity: warning, service: edge, job: sb-edge, instance: "edge-a:3000" } }]
  # Failing batches, a service gone, refused messages and connects, presence without a leader.
  - interval: 1m
    input_series:
      - series: 'switchboard_messaging_batches_failed_total{job="sb-messaging", instance="messaging:9103"}'
        values: '0+3x20'
      - series: 'up{job="sb-auth", instance="auth:9101"}'
        values: '1 1 0x20'
      - series: 'switchboard_edge_ingest_failures_total{job="sb-edge", instance="edge:3000"}'
        values: '0+10x20'
      - series: 'switchboard_edge_connect_rejects_total{job="sb-edge", instance="edge:3000", reason="auth unavailable"}'
        values: '0+5x20'
      - series: 'switchboard_edge_connect_rejects_total{job="sb-edge", instance="edge:3000", reason="token expired"}'
        values: '0+5x20'
      - series: 'switchboard_presence_leader{job="sb-presence", instance="presence-0:9102"}'
        values: '1 1 0x20'
      - series: 'switchboard_presence_leader{job="sb-presence", instance="presence-1:9102"}'
        values: '0x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: SwitchboardMessagingBatchesFailing
        exp_alerts: [{ exp_labels: { severity: warning, service: messaging, job: sb-messaging, instance: "messaging:9103" } }]
      - eval_time: 10m
        alertname: SwitchboardServiceDown
        exp_alerts: [{ exp_labels: { severity: critical, job: sb-auth, instance: "auth:9101" } }]
      - eval_time: 10m
        alertname: SwitchboardMessagesRefused
        exp_alerts: [{ exp_labels: { severity: critical, service: edge, job: sb-edge, instance: "edge:3000" } }]
      - eval_time: 10m
        alertname: SwitchboardEdgeRefusingConnects
        exp_alerts: [{ exp_labels: { severity: warning, service: edge, job: sb-edge, instance: "edge:3000", reason: auth unavailable } }]
      - eval_time: 10m
        alertname: SwitchboardPresenceNoLeader
        exp_alerts: [{ exp_labels: { severity: warning, service: presence } }]
  # Healthy: nothing fires.
  - interval: 1m
    input_series:
      - series: 'up{job="sb-presence", instance="presence-0:9102"}'
        values: '1x20'
      - series: 'switchboard_presence_leader{job="sb-presence", instance="presence-0:9102"}'
        values: '1x20'
      - series: 'switchboard_presence_nats_connected{job="sb-presence", instance="presence-0:9102"}'
        values: '1x20'
      - series: 'switchboard_messaging_batches_failed_total{job="sb-messaging", instance="messaging:9103"}'
        values: '7x20'
    alert_rule_test:
      - { eval_time: 15m, alertname: SwitchboardPresenceNoLeader, exp_alerts: [] }
      - { eval_time: 15m, alertname: SwitchboardNatsDisconnected, exp_alerts: [] }
      - { eval_time: 15m, alertname: SwitchboardServiceDown, exp_alerts: [] }
      - { eval_time: 15m, alertname: SwitchboardMessagingBatchesFailing, exp_alerts: [] }
"#;

#[test]
fn promtool_sees_each_alert_fire_when_it_should() {
    let promtool = tool("ensure-promtool.sh", "PROMTOOL_BIN");
    let mut alerts = yaml(ALERTS);
    for group in alerts["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            rule.as_mapping_mut().expect("a rule").remove("annotations");
        }
    }
    let scratch = tempfile::tempdir().expect("temp dir");
    let rules = scratch.path().join("alerts.yaml");
    std::fs::write(&rules, serde_norway::to_string(&alerts).expect("encode rules")).expect("write rules");
    let tested: BTreeSet<&str> = RULE_TESTS
        .lines()
        .filter_map(|line| line.split("alertname: ").nth(1))
        .map(|rest| rest.split([' ', ',']).next().unwrap_or_default())
        .collect();
    for rule in alert_rules() {
        let name = str_of(&rule["alert"]);
        assert!(tested.contains(name.as_str()), "RULE_TESTS has no case for {name}");
    }
    let cases = scratch.path().join("alerts.test.yaml");
    std::fs::write(&cases, format!("rule_files: [{}]\n{RULE_TESTS}", rules.display())).expect("write cases");
    let (ok, report) = run(Command::new(&promtool).args(["test", "rules"]).arg(&cases));
    assert!(ok, "promtool test rules:\n{report}");
}

#[test]
fn dashboard_is_grafana_json_on_the_datasource_variable() {
    let dashboard = dashboard();
    let schema_version = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema_version), "schemaVersion {schema_version}: datasources by uid (36+)");
    assert!(dashboard["uid"].as_str().is_some_and(|uid| !uid.is_empty()), "the dashboard has a uid");
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let datasource =
        variables.iter().find(|variable| variable["name"] == "datasource").expect("a `datasource` template variable");
    assert_eq!(datasource["type"], "datasource", "`datasource` picks a datasource");
    assert_eq!(datasource["query"], "prometheus", "of type prometheus");

    let panels = all_panels(&dashboard);
    let mut ids = BTreeSet::new();
    let mut rows = 0;
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("?");
        let id = panel["id"].as_u64().unwrap_or_else(|| panic!("panel {title:?} has an id"));
        assert!(ids.insert(id), "panel id {id} ({title:?}) is used twice");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().expect("gridPos.x"), grid["w"].as_u64().expect("gridPos.w"));
        assert!(x + w <= 24 && grid["h"].as_u64().is_some() && grid["y"].as_u64().is_some(), "{title:?}: gridPos");
        // A row only groups panels: it has no queries and so no datasource.
        if panel["type"] == "row" {
            rows += 1;
            assert!(panel["targets"].is_null(), "row {title:?} has no queries");
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], DATASOURCE, "panel {title:?} uses the datasource variable");
        assert_eq!(panel["datasource"]["type"], "prometheus", "panel {title:?}");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title:?} has targets"));
        assert!(!targets.is_empty(), "panel {title:?} has queries");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"]["uid"], DATASOURCE, "{title:?}: every query on the variable");
            let ref_id = target["refId"].as_str().unwrap_or_else(|| panic!("{title:?}: a refId"));
            assert!(ref_ids.insert(ref_id), "{title:?}: refId {ref_id} twice");
        }
    }
    assert!(rows >= 4, "a row per service: {rows} rows");
    for service in ["Edge", "Messaging", "Presence", "Auth"] {
        assert!(
            panels.iter().any(|panel| panel["type"] == "row" && panel["title"] == service),
            "the dashboard has a row {service}"
        );
    }
}

#[test]
fn compose_observability_profile_mounts_files_that_exist_and_scrapes_the_services() {
    let services = compose_services();
    let services = services.as_mapping().expect("compose services");
    let by_name = |name: &str| -> &Value {
        services.get(name).unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
    };
    let in_profile: BTreeSet<String> = services
        .iter()
        .filter(|(_, service)| seq(&service["profiles"]).iter().any(|p| str_of(p) == PROFILE))
        .map(|(name, _)| str_of(name))
        .collect();
    for name in ["prometheus", "grafana", "nats-exporter"] {
        assert!(in_profile.contains(name), "{name} is in the {PROFILE} profile: {in_profile:?}");
    }
    let declared_volumes = yaml("docker-compose.yml")["volumes"].clone();
    for name in &in_profile {
        let service = by_name(name);
        let profiles: Vec<String> = seq(&service["profiles"]).iter().map(str_of).collect();
        assert_eq!(profiles, [PROFILE], "{name} starts only with --profile {PROFILE}");
        let image = str_of(&service["image"]);
        let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or_default();
        assert!(!tag.is_empty() && tag != "latest" && !tag.contains('/'), "{name}: a pinned image, got {image}");
        for volume in seq(&service["volumes"]).iter().map(str_of) {
            let source = volume.split(':').next().expect("a source");
            if let Some(path) = source.strip_prefix("./") {
                assert!(repo_root().join(path).exists(), "{name} mounts {path}, which does not exist");
                assert!(volume.ends_with(":ro"), "{name} mounts {path} read-only");
            } else {
                assert!(declared_volumes.get(source).is_some(), "{name}: named volume {source} is declared");
            }
        }
        for (on, _) in service["depends_on"].as_mapping().into_iter().flatten() {
            assert!(services.contains_key(on), "{name} depends on {}, not a compose service", str_of(on));
        }
    }

    // Prometheus: its config where --config.file says, alerts.yaml beside it.
    let prometheus = by_name("prometheus");
    let mounts = bind_mounts(prometheus);
    let config_path = flag_value(&command_args(prometheus), "--config.file").expect("--config.file");
    assert_eq!(mounts.get(&config_path).map(String::as_str), Some(PROMETHEUS_CONFIG), "{config_path}");
    let config_dir = config_path.rsplit_once('/').map(|(dir, _)| dir).expect("a config dir");
    assert_eq!(mounts.get(&format!("{config_dir}/alerts.yaml")).map(String::as_str), Some(ALERTS));

    // Grafana: the datasource and dashboard providers, and the dashboard where the provider reads.
    let grafana = by_name("grafana");
    let mounts = bind_mounts(grafana);
    let provisioned = |kind: &str| -> Value {
        let (_, source) = mounts
            .iter()
            .find(|(target, _)| target.starts_with(&format!("/etc/grafana/provisioning/{kind}/")))
            .unwrap_or_else(|| panic!("grafana mounts a {kind} provisioning file"));
        yaml(source)
    };
    let datasources = provisioned("datasources");
    let datasource = &seq(&datasources["datasources"])[0];
    assert_eq!(str_of(&datasource["type"]), "prometheus");
    let prometheus_port =
        seq(&prometheus["ports"]).iter().map(str_of).find_map(|p| p.rsplit(':').next().map(str::to_owned));
    assert_eq!(
        str_of(&datasource["url"]),
        format!("http://prometheus:{}", prometheus_port.expect("prometheus publishes its port")),
        "the datasource is the compose Prometheus"
    );
    let dashboards = provisioned("dashboards");
    let provider_path = str_of(&seq(&dashboards["providers"])[0]["options"]["path"]);
    let dashboard_mount = mounts
        .iter()
        .find(|(_, source)| source.as_str() == DASHBOARD)
        .map(|(target, _)| target.clone())
        .unwrap_or_else(|| panic!("grafana mounts {DASHBOARD}"));
    assert!(
        dashboard_mount.starts_with(&format!("{provider_path}/")),
        "{DASHBOARD} is in the provider's {provider_path}"
    );

    // Scrape targets: a compose service each, on the port it serves /metrics on.
    let config = yaml(PROMETHEUS_CONFIG);
    let mut scraped = BTreeSet::new();
    for job in seq(&config["scrape_configs"]) {
        for target in seq(&job["static_configs"]).iter().flat_map(|sc| seq(&sc["targets"])).map(str_of) {
            let (host, port) = target.split_once(':').unwrap_or_else(|| panic!("{target}: host:port"));
            if host == "localhost" {
                continue;
            }
            assert!(services.contains_key(host), "{PROMETHEUS_CONFIG} scrapes {host}, not a compose service");
            let environment = &by_name(host)["environment"];
            let metrics_addr = ["METRICS_ADDR", "LISTEN_ADDR"].iter().find_map(|key| environment[*key].as_str());
            if let Some(addr) = metrics_addr {
                assert_eq!(port_of(addr).to_string(), port, "{host} serves /metrics on {addr}");
            }
            scraped.insert(host.to_owned());
        }
    }
    for service in super::services().keys() {
        assert!(scraped.contains(*service), "{PROMETHEUS_CONFIG} scrapes {service}");
        let job = format!("sb-{service}");
        assert!(
            seq(&config["scrape_configs"]).iter().any(|j| str_of(&j["job_name"]) == job),
            "the job of {service} is named {job}, as the Kubernetes ServiceMonitors name it"
        );
    }
}

#[test]
fn compose_file_is_valid_against_the_compose_specification_schema() {
    let validator = tool("ensure-check-jsonschema.sh", "CHECK_JSONSCHEMA_BIN");
    let (ok, report) = run(Command::new(&validator)
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(repo_root().join("docker-compose.yml")));
    assert!(ok, "docker-compose.yml does not match the Compose Specification:\n{report}");
}
