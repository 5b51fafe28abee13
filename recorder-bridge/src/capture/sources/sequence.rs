//! A device's sequence numbers as the host counts them: `xiao_proto`'s
//! [`SequenceTracker`] decides what each number means (first, next, a gap, stale), the
//! same accounting the firmware's own tests use; this keeps the 64-bit count that the
//! 32-bit numbers wrap around.

use xiao_proto::{SeqEvent, SeqNo, SequenceTracker};

/// The sequence of one device: 64-bit numbers and the samples each step skipped.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DeviceSequence {
    tracker: SequenceTracker,
    wide: u64,
}

impl DeviceSequence {
    /// The 64-bit number of `seq` and how many numbers were skipped since the last one
    /// accepted; `None` for a repeated or older number (ignored).
    pub(crate) fn accept(&mut self, seq: SeqNo) -> Option<(u64, u64)> {
        match self.tracker.observe(seq) {
            SeqEvent::First => {
                self.wide = u64::from(seq.0);
                Some((self.wide, 0))
            }
            SeqEvent::InOrder => {
                self.wide += 1;
                Some((self.wide, 0))
            }
            SeqEvent::Gap { missing } => {
                self.wide += u64::from(missing) + 1;
                Some((self.wide, u64::from(missing)))
            }
            _ => None,
        }
    }

    /// The tracker's counts (received, missing, gaps, stale).
    #[cfg(test)]
    pub(crate) fn tracker(&self) -> &SequenceTracker {
        &self.tracker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_wrap_and_repeats() {
        let mut w = DeviceSequence::default();
        assert_eq!(
            w.accept(SeqNo(u32::MAX - 1)),
            Some((u64::from(u32::MAX) - 1, 0))
        );
        assert_eq!(w.accept(SeqNo(u32::MAX)), Some((u64::from(u32::MAX), 0)));
        assert_eq!(w.accept(SeqNo(2)), Some((u64::from(u32::MAX) + 3, 2)));
        assert_eq!(w.accept(SeqNo(2)), None);
        assert_eq!(w.accept(SeqNo(1)), None);
        // The tracker saw the same: one gap of two, two stale numbers.
        let t = w.tracker();
        assert_eq!(
            (t.received(), t.missing(), t.gaps(), t.stale()),
            (5, 2, 1, 2)
        );
    }
}
