//! The `report` command: results files (JSON lines) → a Markdown table and
//! SVG plots.
//!
//! One table row per run: label, scenario, offered rate, delivered per
//! second, lost, latency p50/p99/max, CPU per 1000 deliveries / messages /
//! connects, RSS per connection, other tenants' CPU, and whether the run
//! was noisy or failed. Per scenario two plots, one series per group
//! (`--group`, else the scenario's shape): (a) p50 and p99 latency against
//! the offered rate (log y axis), (b) server CPU per 1000 deliveries
//! against the offered rate. Noisy runs stay in the table, marked, but are
//! left out of the plots unless asked for.
//!
//! Lines written by the shared bench loadgen (`bench/results/*.jsonl`) are
//! read too, so the NestJS baseline can be plotted beside Switchboard.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Error;
use crate::accounting::round;
use crate::chart::{LineChart, Scale, Series, Stroke};

/// `report` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportSettings {
    /// Results files (JSON lines) to read.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where `report.md` and the SVG plots go (created if missing).
    #[arg(long, default_value = "bench-results/report")]
    pub out_dir: PathBuf,
    /// Plot noisy runs too.
    #[arg(long, default_value_t = false)]
    pub include_noisy: bool,
}

/// One run, as the table and plots show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `--label`.
    pub label: String,
    /// The series the run belongs to.
    pub group: String,
    /// `fanout`, `private`, …
    pub scenario: String,
    /// Offered deliveries per second (messaging), connects per second (connect, churn, storm).
    pub offered_per_s: Option<f64>,
    /// Deliveries per second (messaging), connects or cycles per second otherwise.
    pub delivered_per_s: Option<f64>,
    /// Lost deliveries (messaging), failed connects or checks otherwise.
    pub lost: Option<u64>,
    /// Median latency, ms (end to end, or connect).
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Largest, ms.
    pub max_ms: Option<f64>,
    /// Server CPU per 1000 deliveries, ms.
    pub cpu_ms_per_1000_deliveries: Option<f64>,
    /// Server CPU per 1000 messages sent, ms.
    pub cpu_ms_per_1000_messages: Option<f64>,
    /// Server CPU per 1000 connects, ms.
    pub cpu_ms_per_1000_connects: Option<f64>,
    /// Server RSS per connection, bytes.
    pub rss_bytes_per_connection: Option<f64>,
    /// Other processes' CPU during the window, percent of one core.
    pub other_cpu_pct: Option<f64>,
    /// Other processes used too much CPU.
    pub noisy: bool,
    /// Everything connected and nothing was lost.
    pub ok: bool,
}

/// What `report` wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Runs read.
    pub rows: usize,
    /// Lines that were not results (skipped).
    pub skipped: usize,
    /// Files written.
    pub files: Vec<PathBuf>,
}

fn f64_at(value: &Value, path: &[&str]) -> Option<f64> {
    path.iter().fold(value, |value, key| &value[*key]).as_f64()
}

fn u64_at(value: &Value, path: &[&str]) -> Option<u64> {
    path.iter().fold(value, |value, key| &value[*key]).as_u64()
}

impl Row {
    /// Reads a report line of either loadgen; `None` if it is not one.
    pub fn from_json(line: &Value, noisy_threshold_pct: f64) -> Option<Self> {
        let scenario = line["scenario"].as_str()?.to_owned();
        if line["tool"] == "sb-loadgen" {
            Some(Self::from_report(line, scenario))
        } else {
            Some(Self::from_shared_loadgen(line, scenario, noisy_threshold_pct))
        }
    }

    fn from_report(line: &Value, scenario: String) -> Self {
        let results = &line["results"];
        let messaging = matches!(scenario.as_str(), "fanout" | "private" | "broadcast");
        let latency = if messaging { &results["latency_ms"] } else { &results["connect_latency_ms"] };
        let (offered, delivered, lost) = match scenario.as_str() {
            "fanout" | "private" | "broadcast" => (
                f64_at(results, &["offered_deliveries_per_s"]),
                f64_at(results, &["delivered_per_s"]),
                u64_at(results, &["lost"]),
            ),
            "connect" | "idle" => {
                (f64_at(results, &["rate_limit"]), f64_at(results, &["connects_per_s"]), u64_at(results, &["failed"]))
            }
            "churn" => {
                (f64_at(results, &["rate"]), f64_at(results, &["cycles_per_s"]), u64_at(results, &["churn_failed"]))
            }
            "presence-storm" => (
                f64_at(results, &["rate_limit"]),
                f64_at(results, &["connects_per_s"]),
                u64_at(results, &["storm_failed"]),
            ),
            _ => (None, None, u64_at(results, &["failed"])),
        };
        Self {
            label: line["label"].as_str().unwrap_or("").to_owned(),
            group: line["group"].as_str().unwrap_or(&scenario).to_owned(),
            scenario,
            offered_per_s: offered,
            delivered_per_s: delivered,
            lost,
            p50_ms: f64_at(latency, &["p50"]),
            p99_ms: f64_at(latency, &["p99"]),
            max_ms: f64_at(latency, &["max"]),
            cpu_ms_per_1000_deliveries: f64_at(line, &["cpu_ms_per_1000_deliveries"]),
            cpu_ms_per_1000_messages: f64_at(line, &["cpu_ms_per_1000_messages"]),
            cpu_ms_per_1000_connects: f64_at(line, &["cpu_ms_per_1000_connects"]),
            rss_bytes_per_connection: f64_at(line, &["rss_bytes_per_connection"]),
            other_cpu_pct: f64_at(line, &["host", "other_cpu_pct"]),
            noisy: line["noisy"].as_bool().unwrap_or(false),
            ok: line["ok"].as_bool().unwrap_or(false),
        }
    }

    /// A line of the shared bench loadgen (flat fields, `cpu_measured_window`).
    fn from_shared_loadgen(line: &Value, scenario: String, noisy_threshold_pct: f64) -> Self {
        let cpu = if scenario == "connect" { &line["cpu_connect_phase"] } else { &line["cpu_measured_window"] };
        let cpu = if cpu.is_null() { &line["cpu"] } else { cpu };
        let server_pct = f64_at(cpu, &["server_cpu_pct"]);
        let other_cpu_pct = f64_at(cpu, &["other_cpu_pct"]);
        let messaging = matches!(scenario.as_str(), "fanout" | "private");
        let delivered = if messaging { f64_at(line, &["delivered_per_s"]) } else { f64_at(line, &["connects_per_s"]) };
        // CPU seconds per second over deliveries per second, as ms per 1000.
        let per_1000 = match (server_pct, delivered) {
            (Some(pct), Some(rate)) if rate > 0.0 && messaging => Some(round(pct * 10_000.0 / rate, 3)),
            _ => None,
        };
        let shape = match scenario.as_str() {
            "fanout" => format!(
                "fanout {}x{} s{}",
                line["rooms"].as_u64().unwrap_or(0),
                line["members"].as_u64().unwrap_or(0),
                line["senders_per_room"].as_u64().unwrap_or(0)
            ),
            "private" => format!("private {} pairs", line["pairs"].as_u64().unwrap_or(0)),
            other => other.to_owned(),
        };
        let latency = if messaging { &line["latency_ms"] } else { &line["connect_latency_ms"] };
        Self {
            label: line["label"].as_str().unwrap_or("").to_owned(),
            group: format!("{shape} (shared loadgen)"),
            offered_per_s: if messaging {
                f64_at(line, &["offered_deliveries_per_s"])
            } else {
                f64_at(line, &["rate_limit"]).or_else(|| f64_at(line, &["rate"]))
            },
            delivered_per_s: delivered,
            lost: if messaging { u64_at(line, &["lost"]) } else { u64_at(line, &["failed"]) },
            p50_ms: f64_at(latency, &["p50"]),
            p99_ms: f64_at(latency, &["p99"]),
            max_ms: f64_at(latency, &["max"]),
            cpu_ms_per_1000_deliveries: per_1000,
            cpu_ms_per_1000_messages: if scenario == "private" { per_1000 } else { None },
            cpu_ms_per_1000_connects: None,
            rss_bytes_per_connection: f64_at(line, &["rss_bytes_per_conn"]),
            other_cpu_pct,
            noisy: other_cpu_pct.is_some_and(|pct| pct > noisy_threshold_pct),
            ok: line["lost"].as_u64().unwrap_or(0) == 0 && line["failed"].as_u64().unwrap_or(0) == 0,
            scenario,
        }
    }
}

/// The runs in a results file's text, and how many lines were not runs.
pub fn parse_rows(text: &str, noisy_threshold_pct: f64) -> (Vec<Row>, usize) {
    let mut rows = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        match serde_json::from_str::<Value>(line).ok().and_then(|v| Row::from_json(&v, noisy_threshold_pct)) {
            Some(row) => rows.push(row),
            None => skipped += 1,
        }
    }
    (rows, skipped)
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") })
}

fn text_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The Markdown table of `rows`, in the order given.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut table = String::from(
        "| label | scenario | offered/s | delivered/s | lost | p50 ms | p99 ms | max ms | CPU ms/1k deliveries \
         | CPU ms/1k msgs | CPU ms/1k connects | RSS B/conn | other CPU % | notes |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let notes = match (row.noisy, row.ok) {
            (true, false) => "noisy, failed",
            (true, true) => "noisy",
            (false, false) => "failed",
            (false, true) => "",
        };
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {notes} |",
            text_cell(&row.label),
            text_cell(&row.scenario),
            cell(row.offered_per_s),
            cell(row.delivered_per_s),
            row.lost.map_or_else(|| "–".to_owned(), |lost| lost.to_string()),
            cell(row.p50_ms),
            cell(row.p99_ms),
            cell(row.max_ms),
            cell(row.cpu_ms_per_1000_deliveries),
            cell(row.cpu_ms_per_1000_messages),
            cell(row.cpu_ms_per_1000_connects),
            cell(row.rss_bytes_per_connection),
            cell(row.other_cpu_pct),
        );
    }
    table
}

/// The two plots of each scenario: `(file name, chart)`.
pub fn charts(rows: &[Row], include_noisy: bool) -> Vec<(String, LineChart)> {
    let mut by_scenario: BTreeMap<&str, BTreeMap<&str, Vec<&Row>>> = BTreeMap::new();
    for row in rows.iter().filter(|row| include_noisy || !row.noisy) {
        if row.offered_per_s.is_some() {
            by_scenario.entry(&row.scenario).or_default().entry(&row.group).or_default().push(row);
        }
    }
    let mut charts = Vec::new();
    for (scenario, groups) in by_scenario {
        let messaging = matches!(scenario, "fanout" | "private" | "broadcast");
        let x_label = if messaging { "offered deliveries / s" } else { "offered connects / s" };
        let mut latency = Vec::new();
        let mut cpu = Vec::new();
        for (color, (group, rows)) in groups.iter().enumerate() {
            let points = |pick: fn(&Row) -> Option<f64>| -> Vec<(f64, f64)> {
                rows.iter().filter_map(|row| Some((row.offered_per_s?, pick(row)?))).collect()
            };
            latency.push(Series {
                name: format!("{group} p50"),
                points: points(|r| r.p50_ms),
                color,
                stroke: Stroke::Solid,
            });
            latency.push(Series {
                name: format!("{group} p99"),
                points: points(|r| r.p99_ms),
                color,
                stroke: Stroke::Dashed,
            });
            let cpu_points = points(|r| r.cpu_ms_per_1000_deliveries.or(r.cpu_ms_per_1000_connects));
            if !cpu_points.is_empty() {
                cpu.push(Series { name: group.to_string(), points: cpu_points, color, stroke: Stroke::Solid });
            }
        }
        let what = if messaging { "end-to-end latency" } else { "connect latency" };
        charts.push((
            format!("latency-{scenario}.svg"),
            LineChart {
                title: format!("{scenario}: {what} (p50 solid, p99 dashed)"),
                x_label: x_label.to_owned(),
                y_label: "latency, ms (log)".to_owned(),
                y_scale: Scale::Log,
                series: latency,
            },
        ));
        if !cpu.is_empty() {
            let per = if messaging { "1000 deliveries" } else { "1000 connects" };
            charts.push((
                format!("cpu-{scenario}.svg"),
                LineChart {
                    title: format!("{scenario}: server CPU per {per}"),
                    x_label: x_label.to_owned(),
                    y_label: format!("CPU ms per {per}"),
                    y_scale: Scale::Linear,
                    series: cpu,
                },
            ));
        }
    }
    charts
}

fn write_file(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|error| Error::io(format!("write {}", path.display()), error))
}

/// Reads the inputs and writes `report.md` and the plots into `out_dir`.
/// Lines of the shared loadgen (which have no `noisy` field) count as noisy
/// when other processes used more than `noisy_threshold_pct` of a core.
pub fn write_report(settings: &ReportSettings, noisy_threshold_pct: f64) -> Result<Written, Error> {
    let mut rows = Vec::new();
    let mut skipped = 0;
    for input in &settings.inputs {
        let text =
            std::fs::read_to_string(input).map_err(|error| Error::io(format!("read {}", input.display()), error))?;
        let (more, not_runs) = parse_rows(&text, noisy_threshold_pct);
        rows.extend(more);
        skipped += not_runs;
    }
    std::fs::create_dir_all(&settings.out_dir)
        .map_err(|error| Error::io(format!("create {}", settings.out_dir.display()), error))?;
    let mut files = Vec::new();
    let mut markdown = String::from("# Load test results\n\n");
    let sources: Vec<String> = settings.inputs.iter().map(|input| format!("`{}`", input.display())).collect();
    let _ = writeln!(markdown, "{} runs from {}.\n", rows.len(), sources.join(", "));
    markdown.push_str(&markdown_table(&rows));
    let noisy_note = if settings.include_noisy { "included" } else { "left out" };
    let _ = writeln!(markdown, "\nNoisy runs (other processes above the threshold) are {noisy_note} in the plots.\n");
    for (name, chart) in charts(&rows, settings.include_noisy) {
        let path = settings.out_dir.join(&name);
        write_file(&path, &chart.to_svg())?;
        let _ = writeln!(markdown, "![{}]({name})\n", chart.title);
        files.push(path);
    }
    let report = settings.out_dir.join("report.md");
    write_file(&report, &markdown)?;
    files.insert(0, report);
    Ok(Written { rows: rows.len(), skipped, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = r#"{"tool":"sb-loadgen","label":"fanout 40","group":"fanout 10x100 s1","scenario":"fanout","results":{"offered_deliveries_per_s":39600.0,"delivered_per_s":39600.0,"lost":0,"latency_ms":{"p50":1.2,"p99":8.0,"max":20.5}},"host":{"other_cpu_pct":3.0},"cpu_ms_per_1000_deliveries":12.5,"cpu_ms_per_1000_messages":null,"noisy":false,"ok":true}"#;
    const SHARED: &str = r#"{"scenario":"private","label":"c private 4","pairs":500,"offered_deliveries_per_s":4000.0,"delivered_per_s":4000.0,"lost":0,"latency_ms":{"p50":0.51,"p99":15.8,"max":52.0},"cpu_measured_window":{"server_cpu_pct":61.0,"other_cpu_pct":40.0}}"#;

    #[test]
    fn rows_come_from_both_loadgens_and_garbage_is_skipped() {
        let text = format!("{OURS}\nnot json\n\n{SHARED}\n{{\"no\":\"scenario\"}}\n");
        let (rows, skipped) = parse_rows(&text, 25.0);
        assert_eq!((rows.len(), skipped), (2, 2));
        assert_eq!(rows[0].offered_per_s, Some(39_600.0));
        assert_eq!(rows[0].p99_ms, Some(8.0));
        assert_eq!(rows[0].cpu_ms_per_1000_deliveries, Some(12.5));
        assert!(!rows[0].noisy && rows[0].ok);
        assert_eq!(rows[1].group, "private 500 pairs (shared loadgen)");
        // 0.61 CPU s/s over 4000 msg/s = 152.5 µs per message = 152.5 ms per 1000.
        assert_eq!(rows[1].cpu_ms_per_1000_messages, Some(152.5));
        assert!(rows[1].noisy, "40 % other CPU is above 25 %");
    }

    #[test]
    fn the_table_has_a_row_per_run_and_charts_skip_noisy_runs() {
        let (rows, _) = parse_rows(&format!("{OURS}\n{SHARED}\n"), 25.0);
        let table = markdown_table(&rows);
        assert_eq!(table.lines().count(), 4);
        assert!(table.contains("| fanout 40 | fanout | 39600 | 39600 | 0 | 1.20 | 8.00 | 20.50 | 12.50 |"), "{table}");
        assert!(table.lines().nth(3).is_some_and(|line| line.ends_with("| noisy |")));
        let names: Vec<String> = charts(&rows, false).into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["latency-fanout.svg", "cpu-fanout.svg"]);
        assert_eq!(charts(&rows, true).len(), 4);
    }
}
