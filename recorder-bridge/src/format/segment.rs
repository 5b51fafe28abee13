//! Scan segment markers: which line of a raster scan (or sweep) a sample belongs to and
//! whether that line is measured.

/// Identifier of a scan segment (a line of a raster scan, a sweep, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SegmentId(pub u32);

/// Whether the stage is on an active (measured) line or travelling between lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LineState {
    /// Between lines: samples are kept unless the recording keeps active lines only.
    #[default]
    Inactive,
    /// On a measured line.
    Active,
}

impl LineState {
    /// `1` for active, `0` for inactive (the CSV encoding).
    pub fn as_flag(self) -> u8 {
        match self {
            LineState::Active => 1,
            LineState::Inactive => 0,
        }
    }

    /// Parses the CSV flag (`0`/`1`).
    pub fn from_flag(flag: u8) -> Option<Self> {
        match flag {
            0 => Some(LineState::Inactive),
            1 => Some(LineState::Active),
            _ => None,
        }
    }
}

/// A segment marker: the segment id and whether its line is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Segment {
    /// Segment id.
    pub id: SegmentId,
    /// Line state.
    pub line: LineState,
}
