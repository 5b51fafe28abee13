//! This process's memory and CPU time, from /proc (Linux).

use anyhow::{Context, Result};

/// Resident set size of this process, from /proc/self/status.
pub(crate) fn vm_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS line")?
        .parse()?)
}

/// User + system CPU time of this process so far, from /proc/self/stat.
pub(crate) fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line, 12 and 13 after `)`.
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    Ok(ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// Linux reports process times in USER_HZ, which is 100 on every mainstream platform.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
