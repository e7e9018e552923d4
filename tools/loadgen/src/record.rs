//! The record of one run: the [`Report`] a scenario's results become, with
//! the machine, the command, the settings and what the window cost; and
//! its one-line JSON form appended to a results file.

use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::accounting::{Machine, Snapshot, Usage, round};
use crate::scenario::{Results, ScenarioName};
use crate::{ClientSettings, Error, RunSettings};

/// The settings a run was made with.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedSettings {
    /// Where and how it connected (the secret is never recorded).
    pub client: ClientSettings,
    /// Labels, window and watched processes.
    pub run: RunSettings,
    /// The scenario's own settings.
    pub scenario: serde_json::Value,
}

/// Everything a scenario hands back to be recorded.
pub(crate) struct Outcome {
    /// Its results.
    pub results: Results,
    /// Snapshots at the start and end of the measured window.
    pub window: (Snapshot, Snapshot),
    /// Messages received by their recipients in the window (fanout, private, broadcast).
    pub deliveries: Option<u64>,
    /// Messages sent in the window (fanout, private, broadcast).
    pub messages: Option<u64>,
    /// Connections opened in the window (connect, churn).
    pub connects: Option<u64>,
    /// Connections open at the end of the window, for RSS per connection (idle, connect).
    pub connections: Option<u64>,
    /// The default series name for plots (`fanout 10x100 s1`).
    pub group: String,
    /// Whether everything connected and nothing was lost.
    pub ok: bool,
}

/// One run, as written to the results file (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `sb-loadgen`.
    pub tool: &'static str,
    /// The loadgen's version.
    pub version: &'static str,
    /// `--label`.
    pub label: Option<String>,
    /// Series name for plots: `--group`, else derived from the scenario's shape.
    pub group: String,
    /// `fanout`, `private`, …
    pub scenario: ScenarioName,
    /// When the report was made (the end of the run), RFC 3339 UTC.
    pub utc: String,
    /// The same, seconds since the Unix epoch.
    pub unix_time: u64,
    /// The command line (shell-quoted where needed).
    pub command: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// Worker threads of the runtime the connections ran on.
    pub runtime_threads: usize,
    /// What it was asked to do.
    pub settings: RecordedSettings,
    /// What the scenario measured.
    pub results: Results,
    /// What the measured window cost: `window_s`, `processes`, `loadgen`, `host`, `server_cpu_*`.
    #[serde(flatten)]
    pub usage: Usage,
    /// Other processes used more than `noisy_threshold_pct` of a core: re-run it.
    pub noisy: bool,
    /// The threshold for `noisy`, percent of one core.
    pub noisy_threshold_pct: f64,
    /// Deliveries counted in the window.
    pub deliveries: Option<u64>,
    /// Messages sent in the window.
    pub messages: Option<u64>,
    /// CPU of all watched processes per 1000 deliveries, ms.
    pub cpu_ms_per_1000_deliveries: Option<f64>,
    /// CPU of all watched processes per 1000 messages sent (private, broadcast), ms.
    pub cpu_ms_per_1000_messages: Option<f64>,
    /// CPU of all watched processes per 1000 connects (connect, churn), ms.
    pub cpu_ms_per_1000_connects: Option<f64>,
    /// RSS growth of all watched processes per open connection, bytes (idle, connect).
    pub rss_bytes_per_connection: Option<f64>,
    /// Everything connected and nothing was lost.
    pub ok: bool,
}

impl Report {
    /// Records `outcome` of `scenario` run with these settings.
    pub(crate) fn new(
        scenario: ScenarioName,
        scenario_settings: serde_json::Value,
        client: &ClientSettings,
        run: &RunSettings,
        outcome: Outcome,
    ) -> Self {
        let Outcome { results, window: (start, end), deliveries, messages, connects, connections, group, ok } = outcome;
        let usage = Usage::between(&start, &end, &run.pids);
        let per_1000 = |count: Option<u64>| match (usage.server_cpu_seconds, count) {
            (Some(seconds), Some(count)) if count > 0 => Some(round(seconds * 1000.0 / (count as f64 / 1000.0), 3)),
            _ => None,
        };
        let rss_bytes_per_connection = match connections {
            Some(connections) if connections > 0 && !usage.processes.is_empty() => usage
                .processes
                .iter()
                .map(|process| Some(process.rss_kb_end? as f64 - process.rss_kb_start? as f64))
                .sum::<Option<f64>>()
                .map(|kb| round(kb * 1024.0 / connections as f64, 1)),
            _ => None,
        };
        let noisy = usage.host.other_cpu_pct.is_some_and(|pct| pct > run.noisy_threshold_pct);
        let now = SystemTime::now();
        Self {
            tool: "sb-loadgen",
            version: env!("CARGO_PKG_VERSION"),
            label: run.label.clone(),
            group: run.group.clone().unwrap_or(group),
            scenario,
            utc: utc_now(),
            unix_time: now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs()),
            command: shell_join(&run.command),
            machine: Machine::describe(),
            runtime_threads: tokio::runtime::Handle::try_current().map_or(0, |handle| handle.metrics().num_workers()),
            settings: RecordedSettings { client: client.clone(), run: run.clone(), scenario: scenario_settings },
            results,
            noisy,
            noisy_threshold_pct: run.noisy_threshold_pct,
            cpu_ms_per_1000_deliveries: per_1000(deliveries),
            cpu_ms_per_1000_messages: if matches!(scenario, ScenarioName::Private | ScenarioName::Broadcast) {
                per_1000(messages)
            } else {
                None
            },
            cpu_ms_per_1000_connects: per_1000(connects),
            deliveries,
            messages,
            usage,
            rss_bytes_per_connection,
            ok,
        }
    }

    /// The report as one JSON line (no newline).
    pub fn to_json_line(&self) -> Result<String, Error> {
        Ok(serde_json::to_string(self)?)
    }

    /// Appends the JSON line to `path` (created if missing).
    pub fn append_to(&self, path: &Path) -> Result<(), Error> {
        let line = self.to_json_line()?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|error| Error::io(format!("open {}", path.display()), error))?;
        writeln!(file, "{line}").map_err(|error| Error::io(format!("append to {}", path.display()), error))
    }
}

fn utc_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Joins arguments into one line a shell would split back the same way.
pub fn shell_join(args: &[String]) -> String {
    let quote = |arg: &String| {
        let plain = !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
        if plain { arg.clone() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
    };
    args.iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let args = ["sb-loadgen", "--label", "fanout 40/s", "--pid", "edge=12", "it's"].map(String::from);
        assert_eq!(shell_join(&args), r"sb-loadgen --label 'fanout 40/s' --pid edge=12 'it'\''s'");
    }
}
