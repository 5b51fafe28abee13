//! CSV as the tools KWIK replaces wrote it: the XIAO recorder's comment header, whose
//! totals (duration, samples, average rate) are known only at the end and so are written
//! as fixed-width placeholders first and overwritten in place when the file closes.

/// Which tool's CSV conventions a file follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CsvCompat {
    /// KWIK's own layout (default): `#` comment lines with session, device and
    /// settings, and a `# end samples=N dropped=D` footer.
    #[default]
    Kwik,
    /// The XIAO recorder's layout (`xiao-imu` schema only): its comment header (when
    /// comment lines are on) and no footer, so notebooks written for it read the file
    /// unchanged; the sidecar carries its field names too.
    Xiao,
    /// The E-field imaging bench's position exporter (`stage` schema only), as it wrote
    /// positions whatever the layout of the E-field file, LabVIEW included: a
    /// `# Metadata` block of comment lines and an empty line before the header row
    /// (when comment lines are on), the same columns as KWIK's, and the footer
    /// `# End of export,N`. `--format labview` writes stage streams this way.
    Bench,
}

impl CsvCompat {
    /// The name used by the CLI and sidecars (`kwik`, `xiao`).
    pub fn name(self) -> &'static str {
        match self {
            CsvCompat::Kwik => "kwik",
            CsvCompat::Xiao => "xiao",
            CsvCompat::Bench => "bench",
        }
    }

    /// From [`CsvCompat::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "kwik" => Some(CsvCompat::Kwik),
            "xiao" => Some(CsvCompat::Xiao),
            "bench" => Some(CsvCompat::Bench),
            _ => None,
        }
    }

    /// Whether files in this layout end with a footer line ([`Footer`] in this
    /// layout's form).
    ///
    /// [`Footer`]: crate::format::footer::Footer
    pub fn has_footer(self) -> bool {
        self != CsvCompat::Xiao
    }

    /// The only schema this layout is for, if it is for one.
    pub fn schema(self) -> Option<&'static str> {
        match self {
            CsvCompat::Kwik => None,
            CsvCompat::Xiao => Some("xiao-imu"),
            CsvCompat::Bench => Some("stage"),
        }
    }
}

/// What a file's header says about its recording, known when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderFacts {
    /// Start time (the group's t0), RFC 3339.
    pub start: String,
    /// Device name.
    pub device: String,
}

/// First line of the XIAO comment header.
pub const XIAO_TITLE: &str = "XIAO nRF52840 Sense Recording Session";
const DURATION_LABEL: &str = "# Recording Duration: ";
const SAMPLES_LABEL: &str = "# Total Samples: ";
const RATE_LABEL: &str = "# Sample Rate: ";
const DURATION_WIDTH: usize = 16;
const SAMPLES_WIDTH: usize = 20;
const RATE_WIDTH: usize = 32;

/// Bytes of the totals block ([`xiao_totals`]): always the same, so it can be
/// overwritten in place.
pub const XIAO_TOTALS_LEN: usize = DURATION_LABEL.len()
    + DURATION_WIDTH
    + SAMPLES_LABEL.len()
    + SAMPLES_WIDTH
    + RATE_LABEL.len()
    + RATE_WIDTH
    + 3;

/// Appends the XIAO header lines before the totals; returns nothing (the totals block
/// follows at once, see [`xiao_totals`]).
pub(crate) fn write_xiao_title(facts: &HeaderFacts, out: &mut Vec<u8>) {
    let clean = |s: &str| s.replace('\n', " ");
    out.extend_from_slice(format!("# {XIAO_TITLE}\n").as_bytes());
    out.extend_from_slice(format!("# Start Time: {}\n", clean(&facts.start)).as_bytes());
    out.extend_from_slice(format!("# Device: {}\n", clean(&facts.device)).as_bytes());
}

/// The three totals lines, `# Recording Duration: HH:MM:SS.s`, `# Total Samples: N`
/// and `# Sample Rate: X Hz (average)`, each value padded with spaces to a fixed width
/// (readers that split on `:` and parse the number ignore the trailing spaces).
/// `span_us` is the time from the first to the last sample.
pub fn xiao_totals(samples: u64, span_us: u64) -> Vec<u8> {
    let tenths = span_us / 100_000;
    let duration = format!(
        "{:02}:{:02}:{:02}.{}",
        tenths / 36_000,
        tenths / 600 % 60,
        tenths / 10 % 60,
        tenths % 10
    );
    let rate = if span_us > 0 {
        samples as f64 / (span_us as f64 / 1e6)
    } else {
        0.0
    };
    let rate = format!("{rate:.1} Hz (average)");
    let mut out = Vec::with_capacity(XIAO_TOTALS_LEN);
    for (label, value, width) in [
        (DURATION_LABEL, duration, DURATION_WIDTH),
        (SAMPLES_LABEL, samples.to_string(), SAMPLES_WIDTH),
        (RATE_LABEL, rate, RATE_WIDTH),
    ] {
        out.extend_from_slice(label.as_bytes());
        // A value wider than its field (a recording of over 10^11 hours) is cut rather
        // than shifting the rows after it.
        let v = &value.as_bytes()[..value.len().min(width)];
        out.extend_from_slice(v);
        out.resize(out.len() + width - v.len(), b' ');
        out.push(b'\n');
    }
    out
}

/// Where the totals block of a XIAO header starts in a file's bytes, if it has one.
pub fn find_xiao_totals(bytes: &[u8]) -> Option<usize> {
    let head = &bytes[..bytes.len().min(4096)];
    head.windows(DURATION_LABEL.len())
        .position(|w| w == DURATION_LABEL.as_bytes())
        .filter(|&at| at + XIAO_TOTALS_LEN <= bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_have_a_fixed_length_and_the_seed_wording() {
        let t = xiao_totals(3765, 150_500_000);
        assert_eq!(t.len(), XIAO_TOTALS_LEN);
        assert_eq!(xiao_totals(0, 0).len(), XIAO_TOTALS_LEN);
        assert_eq!(xiao_totals(u64::MAX, u64::MAX).len(), XIAO_TOTALS_LEN);
        let text = String::from_utf8(t).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(
            lines,
            [
                "# Recording Duration: 00:02:30.5",
                "# Total Samples: 3765",
                "# Sample Rate: 25.0 Hz (average)"
            ]
        );
        let mut file = b"# a\n".to_vec();
        file.extend_from_slice(text.as_bytes());
        assert_eq!(find_xiao_totals(&file), Some(4));
    }
}
