//! Command-line values the scenarios share.

use clap::ValueEnum;

/// Which transport a scenario drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Stack {
    /// Raw quinn: one QUIC connection (one path).
    Quinn,
    /// A kwik session.
    Kwik,
}

/// kwik scheduling policies selectable from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Policy {
    MinRtt,
    Aggregate,
    Redundant,
    Backup,
}

impl Policy {
    /// The kwik scheduler of this policy.
    pub(crate) fn scheduler(self) -> kwik::Scheduler {
        match self {
            Policy::MinRtt => kwik::Scheduler::MinRtt,
            Policy::Aggregate => kwik::Scheduler::Aggregate,
            Policy::Redundant => kwik::Scheduler::Redundant,
            Policy::Backup => kwik::Scheduler::Backup,
        }
    }
}
