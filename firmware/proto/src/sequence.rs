//! Host-side accounting of sequence numbers: gaps mean lost samples.

use crate::sample::SeqNo;

/// What one observed sequence number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SeqEvent {
    /// The first number seen.
    First,
    /// Exactly the number after the previous one.
    InOrder,
    /// `missing` numbers were skipped before this one.
    Gap {
        /// How many samples are missing.
        missing: u32,
    },
    /// A number at or before the latest one (duplicate, reordered, or the device
    /// restarted); the latest number is kept.
    Stale,
}

/// Counts received, missing and stale sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SequenceTracker {
    last: Option<SeqNo>,
    received: u64,
    missing: u64,
    gaps: u64,
    stale: u64,
}

impl SequenceTracker {
    /// A tracker that has seen nothing.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            last: None,
            received: 0,
            missing: 0,
            gaps: 0,
            stale: 0,
        }
    }

    /// Records one received number. A jump of 2^31 or more forward counts as stale
    /// (it is indistinguishable from a step backwards).
    pub fn observe(&mut self, seq: SeqNo) -> SeqEvent {
        self.received += 1;
        let Some(last) = self.last else {
            self.last = Some(seq);
            return SeqEvent::First;
        };
        let step = last.distance_to(seq);
        if step == 0 || step >= 1 << 31 {
            self.stale += 1;
            return SeqEvent::Stale;
        }
        self.last = Some(seq);
        if step == 1 {
            SeqEvent::InOrder
        } else {
            self.missing += u64::from(step - 1);
            self.gaps += 1;
            SeqEvent::Gap { missing: step - 1 }
        }
    }

    /// The latest number accepted.
    #[must_use]
    pub const fn last(&self) -> Option<SeqNo> {
        self.last
    }

    /// Numbers observed (including stale ones).
    #[must_use]
    pub const fn received(&self) -> u64 {
        self.received
    }

    /// Total numbers skipped over by gaps: the lost samples.
    #[must_use]
    pub const fn missing(&self) -> u64 {
        self.missing
    }

    /// Number of gaps.
    #[must_use]
    pub const fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Stale numbers observed.
    #[must_use]
    pub const fn stale(&self) -> u64 {
        self.stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_and_stale() {
        let mut t = SequenceTracker::new();
        assert_eq!(t.observe(SeqNo(u32::MAX - 1)), SeqEvent::First);
        assert_eq!(t.observe(SeqNo(u32::MAX)), SeqEvent::InOrder);
        assert_eq!(t.observe(SeqNo(2)), SeqEvent::Gap { missing: 2 });
        assert_eq!(t.observe(SeqNo(2)), SeqEvent::Stale);
        assert_eq!(t.observe(SeqNo(1)), SeqEvent::Stale);
        assert_eq!(t.observe(SeqNo(3)), SeqEvent::InOrder);
        assert_eq!(
            (t.received(), t.missing(), t.gaps(), t.stale()),
            (6, 2, 1, 2)
        );
    }
}
