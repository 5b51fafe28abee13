//! The segment marker every stream of a group stamps on its samples.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::format::segment::{LineState, Segment, SegmentId};

/// The current segment marker of a group, readable and writable from any thread.
#[derive(Debug, Default)]
pub struct SegmentCell(AtomicU64);

impl SegmentCell {
    /// Sets the marker.
    pub fn set(&self, s: Segment) {
        let v = (u64::from(s.id.0) << 1) | u64::from(s.line.as_flag());
        self.0.store(v, Ordering::Release);
    }
    /// Reads the marker.
    pub fn get(&self) -> Segment {
        let v = self.0.load(Ordering::Acquire);
        Segment {
            id: SegmentId((v >> 1) as u32),
            line: if v & 1 == 1 {
                LineState::Active
            } else {
                LineState::Inactive
            },
        }
    }
}
