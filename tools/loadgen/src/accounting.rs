//! What the machine spent during a measured window, from `/proc`.
//!
//! A [`Snapshot`] at the start and one at the end of the window give, per
//! watched process (`--pid NAME=PID`), the CPU seconds (`utime + stime`
//! from `/proc/PID/stat`) and `VmRSS` at both ends; the same for the
//! loadgen itself; and the host's busy CPU from the first line of
//! `/proc/stat`. What the host spent beyond the watched processes and the
//! loadgen is `other_cpu`: other tenants on a shared box. A window where
//! that is high is `noisy` and should be re-run, not reported.
//!
//! The parsers are pure functions over the files' text, tested on samples.

use std::time::Instant;

use serde::Serialize;

use crate::WatchedProcess;

/// CPU time of one process, in clock ticks, and its resident set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// `utime + stime`, in clock ticks.
    pub cpu_ticks: u64,
    /// `VmRSS`, KiB.
    pub rss_kb: Option<u64>,
}

/// The host's CPU counters from the `cpu` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCpu {
    /// user + nice + system + irq + softirq (as the shared loadgen counted it).
    pub busy: u64,
    /// Time the hypervisor gave to other guests.
    pub steal: u64,
}

/// Parses `utime + stime` out of `/proc/PID/stat` (fields 14 and 15; the
/// command name in parentheses may itself contain spaces and parentheses).
pub fn parse_pid_stat(text: &str) -> Option<u64> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After ")" come field 3 (state) onwards: utime is the 12th of those.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Parses `VmRSS` (KiB) out of `/proc/PID/status`.
pub fn parse_vm_rss_kb(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_host_cpu(text: &str) -> Option<HostCpu> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let field = |index: usize| ticks.get(index).copied();
    Some(HostCpu { busy: field(0)? + field(1)? + field(2)? + field(5)? + field(6)?, steal: field(7).unwrap_or(0) })
}

/// Parses `MemTotal` (KiB) out of `/proc/meminfo`.
pub fn parse_mem_total_kb(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The first `model name` in `/proc/cpuinfo`.
pub fn parse_cpu_model(text: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Samples process `pid` ("self" for the loadgen); `None` once it is gone.
fn sample_process(pid: &str) -> Option<ProcessSample> {
    let cpu_ticks = parse_pid_stat(&read_proc(&format!("/proc/{pid}/stat"))?)?;
    let rss_kb = read_proc(&format!("/proc/{pid}/status")).as_deref().and_then(parse_vm_rss_kb);
    Some(ProcessSample { cpu_ticks, rss_kb })
}

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

/// The machine a run measured, for comparing runs later.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `/proc/sys/kernel/hostname`.
    pub hostname: Option<String>,
    /// CPUs this process may run on.
    pub nproc: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    /// `MemTotal`, KiB.
    pub mem_total_kb: Option<u64>,
    /// The soft `RLIMIT_NOFILE` the loadgen runs with.
    pub nofile_limit: Option<u64>,
}

impl Machine {
    /// Reads the facts of this machine.
    pub fn describe() -> Self {
        let trimmed = |path: &str| read_proc(path).map(|text| text.trim().to_owned());
        Self {
            hostname: trimmed("/proc/sys/kernel/hostname"),
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: read_proc("/proc/cpuinfo").as_deref().and_then(parse_cpu_model),
            kernel: trimmed("/proc/sys/kernel/osrelease"),
            mem_total_kb: read_proc("/proc/meminfo").as_deref().and_then(parse_mem_total_kb),
            nofile_limit: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| soft),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (every socket is a
/// file descriptor); returns the soft limit in force afterwards.
pub fn raise_nofile_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// `/proc/loadavg`'s three load averages.
pub fn load_average() -> Option<String> {
    read_proc("/proc/loadavg").map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Everything sampled at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    processes: Vec<Option<ProcessSample>>,
    loadgen: Option<ProcessSample>,
    host: Option<HostCpu>,
}

impl Snapshot {
    /// Samples the watched processes, the loadgen and the host now.
    pub fn take(watched: &[WatchedProcess]) -> Self {
        Self {
            at: Instant::now(),
            processes: watched.iter().map(|process| sample_process(&process.pid.to_string())).collect(),
            loadgen: sample_process("self"),
            host: read_proc("/proc/stat").as_deref().and_then(parse_host_cpu),
        }
    }

    /// RSS (KiB) of each watched process.
    pub fn rss_kb(&self) -> Vec<Option<u64>> {
        self.processes.iter().map(|sample| sample.and_then(|sample| sample.rss_kb)).collect()
    }

    /// RSS (KiB) of the loadgen.
    pub fn loadgen_rss_kb(&self) -> Option<u64> {
        self.loadgen.and_then(|sample| sample.rss_kb)
    }
}

/// One process over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    /// Its name (`--pid NAME=`, else its `comm`).
    pub name: String,
    /// Its pid (absent for the loadgen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// CPU seconds it used in the window.
    pub cpu_seconds: Option<f64>,
    /// Of one core: 100 = one core busy for the whole window.
    pub cpu_pct: Option<f64>,
    /// `VmRSS` at the start, KiB.
    pub rss_kb_start: Option<u64>,
    /// `VmRSS` at the end, KiB.
    pub rss_kb_end: Option<u64>,
}

/// The whole host over the window.
#[derive(Debug, Clone, Serialize)]
pub struct HostUsage {
    /// Busy CPU of the whole host, percent of one core (the host has nproc × 100).
    pub busy_pct: Option<f64>,
    /// Steal, percent of one core.
    pub steal_pct: Option<f64>,
    /// CPU seconds of everything that is neither watched nor the loadgen.
    pub other_cpu_seconds: Option<f64>,
    /// The same, percent of one core.
    pub other_cpu_pct: Option<f64>,
    /// Load averages at the end.
    pub loadavg: Option<String>,
}

/// What a window cost.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// Length of the window, seconds.
    pub window_s: f64,
    /// The watched processes, in `--pid` order.
    pub processes: Vec<ProcessUsage>,
    /// The loadgen itself.
    pub loadgen: ProcessUsage,
    /// The host.
    pub host: HostUsage,
    /// CPU seconds of all watched processes together.
    pub server_cpu_seconds: Option<f64>,
    /// The same, percent of one core.
    pub server_cpu_pct: Option<f64>,
}

impl Usage {
    /// What happened between `start` and `end` (snapshots of the same `watched`).
    pub fn between(start: &Snapshot, end: &Snapshot, watched: &[WatchedProcess]) -> Self {
        let ticks_per_s = clock_ticks_per_second();
        let window_s = end.at.duration_since(start.at).as_secs_f64().max(1e-6);
        let pct = |seconds: f64| round(seconds / window_s * 100.0, 1);
        let usage = |name: String, pid: Option<u32>, a: Option<ProcessSample>, b: Option<ProcessSample>| {
            let cpu_seconds = match (a, b) {
                (Some(a), Some(b)) => Some(b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / ticks_per_s),
                _ => None,
            };
            ProcessUsage {
                name,
                pid,
                cpu_seconds: cpu_seconds.map(|s| round(s, 3)),
                cpu_pct: cpu_seconds.map(pct),
                rss_kb_start: a.and_then(|a| a.rss_kb),
                rss_kb_end: b.and_then(|b| b.rss_kb),
            }
        };
        let processes: Vec<ProcessUsage> = watched
            .iter()
            .zip(start.processes.iter().zip(&end.processes))
            .map(|(process, (a, b))| usage(process_name(process), Some(process.pid), *a, *b))
            .collect();
        let loadgen = usage("loadgen".to_owned(), None, start.loadgen, end.loadgen);
        let server_cpu_seconds = if processes.is_empty() {
            None
        } else {
            processes.iter().map(|process| process.cpu_seconds).sum::<Option<f64>>()
        };
        let host_seconds = match (start.host, end.host) {
            (Some(a), Some(b)) => Some((
                b.busy.saturating_sub(a.busy) as f64 / ticks_per_s,
                b.steal.saturating_sub(a.steal) as f64 / ticks_per_s,
            )),
            _ => None,
        };
        let other_cpu_seconds = host_seconds
            .map(|(busy, _)| (busy - server_cpu_seconds.unwrap_or(0.0) - loadgen.cpu_seconds.unwrap_or(0.0)).max(0.0));
        Self {
            window_s: round(window_s, 3),
            processes,
            loadgen,
            host: HostUsage {
                busy_pct: host_seconds.map(|(busy, _)| pct(busy)),
                steal_pct: host_seconds.map(|(_, steal)| pct(steal)),
                other_cpu_seconds: other_cpu_seconds.map(|s| round(s, 3)),
                other_cpu_pct: other_cpu_seconds.map(pct),
                loadavg: load_average(),
            },
            server_cpu_seconds: server_cpu_seconds.map(|s| round(s, 3)),
            server_cpu_pct: server_cpu_seconds.map(pct),
        }
    }
}

/// `--pid` name, else `/proc/PID/comm`, else `pid<N>`.
pub fn process_name(process: &WatchedProcess) -> String {
    process.name.clone().unwrap_or_else(|| {
        read_proc(&format!("/proc/{}/comm", process.pid))
            .map(|comm| comm.trim().to_owned())
            .unwrap_or_else(|| format!("pid{}", process.pid))
    })
}

/// Rounds to `digits` decimals (for readable JSON).
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_stat_sums_utime_and_stime_even_with_odd_names() {
        let stat = "25598 (cat) R 25551 25551 12850 0 -1 4194304 99 0 0 0 7 3 0 0 20 0 1 0 96554 3133440 357";
        assert_eq!(parse_pid_stat(stat), Some(10));
        let odd = "77 (tokio (rt) 1) S 1 77 77 0 -1 4194560 10 0 0 0 1234 567 0 0 20 0 9 0 100 200 300";
        assert_eq!(parse_pid_stat(odd), Some(1801));
        assert_eq!(parse_pid_stat("77 (x) S 1"), None);
        assert_eq!(parse_pid_stat("garbage"), None);
    }

    #[test]
    fn host_cpu_counts_busy_and_steal() {
        let stat = "cpu  155833 10 17265 17845 784 5 187 463 0 0\ncpu0 77631 0 8179 10037 137 0 34 229 0 0\n";
        assert_eq!(parse_host_cpu(stat), Some(HostCpu { busy: 155833 + 10 + 17265 + 5 + 187, steal: 463 }));
        assert_eq!(parse_host_cpu("cpu0 1 2 3\n"), None, "only the aggregate line counts");
        assert_eq!(parse_host_cpu("cpu  1 2 x 4 5 6 7\n"), None);
    }

    #[test]
    fn status_meminfo_and_cpuinfo_fields() {
        let status = "Name:\tsb-edge\nVmHWM:\t  9000 kB\nVmRSS:\t    1700 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kb(status), Some(1700));
        assert_eq!(parse_vm_rss_kb("Name:\tx\n"), None);
        assert_eq!(parse_mem_total_kb("MemTotal:       24683584 kB\nMemFree: 1 kB\n"), Some(24_683_584));
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
    }

    #[test]
    fn a_window_over_this_process_adds_up() {
        let watched = [WatchedProcess { name: Some("me".to_owned()), pid: std::process::id() }];
        let start = Snapshot::take(&watched);
        let spin_until = Instant::now() + std::time::Duration::from_millis(30);
        while Instant::now() < spin_until {}
        let end = Snapshot::take(&watched);
        let usage = Usage::between(&start, &end, &watched);
        assert_eq!(usage.processes[0].name, "me");
        assert!(usage.processes[0].rss_kb_end.is_some_and(|rss| rss > 0));
        assert!(usage.server_cpu_seconds.is_some());
        assert!(usage.host.other_cpu_pct.is_some_and(|pct| pct >= 0.0));
    }
}
