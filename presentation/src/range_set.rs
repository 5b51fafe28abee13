//! Sorted, non-overlapping, non-adjacent byte ranges.

use std::collections::BTreeMap;
use std::ops::Range;

/// A set of `u64` positions stored as sorted, disjoint, non-touching half-open
/// ranges. Used for acknowledgement ranges, received-bytes tracking and gaps.
///
/// Insertion and removal cost `O(log n + k)` where `k` is the number of stored
/// ranges the operation touches. Empty ranges are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start -> end (exclusive). Invariant: for consecutive entries a, b: a.end < b.start.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `range`; returns how many positions were not in the set before.
    pub fn insert(&mut self, range: Range<u64>) -> u64 {
        let Range { mut start, mut end } = range;
        if start >= end {
            return 0;
        }
        let mut added = end - start;
        // A range starting at or before `start` that reaches it absorbs the front.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= end {
                return 0;
            }
            if e >= start {
                added -= e - start;
                start = s;
                self.ranges.remove(&s);
            }
        }
        // Ranges starting inside (start, end] are merged away.
        while let Some((&s, &e)) = self.ranges.range(start..=end).next() {
            self.ranges.remove(&s);
            let covered_end = e.min(end);
            added -= covered_end - s;
            end = end.max(e);
        }
        self.ranges.insert(start, end);
        added
    }

    /// Removes `range`; returns how many positions were in the set.
    pub fn remove(&mut self, range: Range<u64>) -> u64 {
        let Range { start, end } = range;
        if start >= end {
            return 0;
        }
        let mut removed = 0;
        // A range starting before `start` may stick into the removed span.
        if let Some((&s, &e)) = self.ranges.range(..start).next_back() {
            if e > start {
                self.ranges.insert(s, start);
                if e > end {
                    self.ranges.insert(end, e);
                    return end - start;
                }
                removed += e - start;
            }
        }
        while let Some((&s, &e)) = self.ranges.range(start..end).next() {
            self.ranges.remove(&s);
            if e > end {
                self.ranges.insert(end, e);
                removed += end - s;
                break;
            }
            removed += e - s;
        }
        removed
    }

    /// Removes every position in `other` from `self`; returns how many were removed.
    pub fn subtract(&mut self, other: &RangeSet) -> u64 {
        other.iter().map(|r| self.remove(r)).sum()
    }

    /// Whether `position` is in the set.
    pub fn contains(&self, position: u64) -> bool {
        self.ranges
            .range(..=position)
            .next_back()
            .is_some_and(|(_, &e)| e > position)
    }

    /// Whether every position of `range` is in the set (true for an empty range).
    pub fn contains_range(&self, range: Range<u64>) -> bool {
        if range.start >= range.end {
            return true;
        }
        self.ranges
            .range(..=range.start)
            .next_back()
            .is_some_and(|(_, &e)| e >= range.end)
    }

    /// The first missing span that is followed by a present one, counting from 0:
    /// `0..first.start` if the set does not start at 0, else the hole after the
    /// first range. `None` if there is no hole before the last present position.
    pub fn first_gap(&self) -> Option<Range<u64>> {
        self.gaps_from(0).next()
    }

    /// Missing spans at or after `from` that lie before the last present position,
    /// in order.
    pub fn gaps_from(&self, from: u64) -> impl Iterator<Item = Range<u64>> + '_ {
        let mut cursor = from;
        self.ranges.iter().filter_map(move |(&s, &e)| {
            let gap = (s > cursor).then_some(cursor..s);
            cursor = cursor.max(e);
            gap
        })
    }

    /// The stored ranges in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Range<u64>> + '_ {
        self.ranges.iter().map(|(&s, &e)| s..e)
    }

    /// Number of stored (disjoint) ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Total number of positions in the set.
    pub fn covered(&self) -> u64 {
        self.ranges.iter().map(|(&s, &e)| e - s).sum()
    }

    /// The lowest range, if any.
    pub fn first(&self) -> Option<Range<u64>> {
        self.ranges.first_key_value().map(|(&s, &e)| s..e)
    }

    /// The highest range, if any.
    pub fn last(&self) -> Option<Range<u64>> {
        self.ranges.last_key_value().map(|(&s, &e)| s..e)
    }

    /// Removes and returns the lowest range.
    pub fn pop_first(&mut self) -> Option<Range<u64>> {
        self.ranges.pop_first().map(|(s, e)| s..e)
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

impl FromIterator<Range<u64>> for RangeSet {
    fn from_iter<I: IntoIterator<Item = Range<u64>>>(iter: I) -> Self {
        let mut set = Self::new();
        for r in iter {
            set.insert(r);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranges(set: &RangeSet) -> Vec<Range<u64>> {
        set.iter().collect()
    }

    #[test]
    fn insert_merges_and_counts() {
        let mut s = RangeSet::new();
        assert_eq!(s.insert(10..20), 10);
        assert_eq!(s.insert(30..40), 10);
        assert_eq!(s.insert(15..35), 10);
        assert_eq!(ranges(&s), vec![10..40]);
        assert_eq!(s.insert(40..41), 1, "adjacent ranges coalesce");
        assert_eq!(ranges(&s), vec![10..41]);
        assert_eq!(s.insert(12..13), 0);
        assert_eq!(s.insert(5..5), 0);
        assert_eq!(s.insert(0..100), 69);
        assert_eq!(ranges(&s), vec![0..100]);
    }

    #[test]
    fn remove_splits() {
        let mut s: RangeSet = [0..10, 20..30].into_iter().collect();
        assert_eq!(s.remove(5..25), 10);
        assert_eq!(ranges(&s), vec![0..5, 25..30]);
        assert_eq!(s.remove(1..2), 1);
        assert_eq!(ranges(&s), vec![0..1, 2..5, 25..30]);
        assert_eq!(s.remove(100..200), 0);
        let other: RangeSet = [0..3, 26..27].into_iter().collect();
        assert_eq!(s.subtract(&other), 3);
        assert_eq!(ranges(&s), vec![3..5, 25..26, 27..30]);
    }

    #[test]
    fn contains_and_gaps() {
        let s: RangeSet = [5..10, 20..30].into_iter().collect();
        assert!(!s.contains(4));
        assert!(s.contains(5));
        assert!(!s.contains(10));
        assert!(s.contains_range(21..30));
        assert!(!s.contains_range(8..21));
        assert_eq!(s.first_gap(), Some(0..5));
        assert_eq!(s.gaps_from(5).collect::<Vec<_>>(), vec![10..20]);
        assert_eq!(s.covered(), 15);
        let t: RangeSet = std::iter::once(0..10).collect();
        assert_eq!(t.first_gap(), None);
    }

    proptest! {
        #[test]
        fn matches_a_bitmap(ops in proptest::collection::vec((any::<bool>(), 0u64..200, 0u64..40), 0..60)) {
            let mut set = RangeSet::new();
            let mut model = [false; 256];
            for (add, start, len) in ops {
                let end = start + len;
                let before = (start..end).filter(|&i| model[i as usize]).count() as u64;
                if add {
                    prop_assert_eq!(set.insert(start..end), len - before);
                    for i in start..end { model[i as usize] = true; }
                } else {
                    prop_assert_eq!(set.remove(start..end), before);
                    for i in start..end { model[i as usize] = false; }
                }
                // Structure: sorted, disjoint, non-touching, non-empty.
                let rs = ranges(&set);
                for w in rs.windows(2) { prop_assert!(w[0].end < w[1].start); }
                for r in &rs { prop_assert!(r.start < r.end); }
                for i in 0..256u64 { prop_assert_eq!(set.contains(i), model[i as usize]); }
            }
        }
    }
}
