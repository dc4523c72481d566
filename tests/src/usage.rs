//! What a process, or the whole machine, has used: resident memory and CPU time, from `/proc`
//! (for the benchmarks' figures).

use anyhow::anyhow;

/// Linux reports CPU time in clock ticks of 1/100 s on every platform dsops runs on.
const TICKS_PER_SECOND: u64 = 100;

/// CPU time (user + system) of process `pid` ("self" for this one), in ms.
pub fn cpu_ms(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state, ppid, pgrp, session,
    // tty_nr, tpgid, flags, minflt, cminflt, majflt, cmajflt, utime, stime.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Ok((tick(11) + tick(12)) * 1000 / TICKS_PER_SECOND)
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: &str) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// The most resident memory process `pid` has had, in KiB.
pub fn peak_rss_kib(pid: &str) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM")
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: &str, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {field} for {pid}"))
}

/// Busy CPU time of the whole machine (all cores), in ms.
pub fn machine_busy_ms() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let busy: u64 =
        fields.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy * 1000 / TICKS_PER_SECOND
}
