//! Parsers for command-line values shared by every `kwik-record` subcommand, so that
//! `record --duration 10s` and `demo --duration 10s` read the same way.

use std::time::Duration;

/// Parses a duration such as `10s`, `500ms`, `2m`, `1h` or a bare number of seconds (`2.5`).
///
/// # Errors
/// A message naming the bad value and the accepted forms.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 10s, 500ms, 2m, 1h"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Scheduler choices on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SchedulerArg {
    /// Every byte on every path (lowest latency through a path failure).
    Redundant,
    /// The path with the lowest RTT first, spilling to the others.
    MinRtt,
    /// All paths in proportion to their speed.
    Aggregate,
    /// One path; the others only when it dies.
    Backup,
}

impl From<SchedulerArg> for kwik::Scheduler {
    fn from(s: SchedulerArg) -> Self {
        match s {
            SchedulerArg::Redundant => kwik::Scheduler::Redundant,
            SchedulerArg::MinRtt => kwik::Scheduler::MinRtt,
            SchedulerArg::Aggregate => kwik::Scheduler::Aggregate,
            SchedulerArg::Backup => kwik::Scheduler::Backup,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("4"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
