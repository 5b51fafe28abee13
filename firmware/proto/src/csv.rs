//! The CSV line form `millis,ax,ay,az,gx,gy,gz,tempC,audioRMS`, compatible with the
//! original text stream of the board. Writing and parsing need no allocation.
//!
//! Fixed decimals: accel 4 (0.1 mg), gyro 3, temperature 2, audio RMS 2. Lines end
//! with [`CSV_LINE_END`] (`\r\n`, as the Arduino `println` did); the parser accepts
//! `\n`, `\r\n` or no terminator.

use crate::sample::{ImuSample, SeqNo};
use core::fmt::{self, Write};

/// The header row (without a line end).
pub const CSV_HEADER: &str = "millis,ax,ay,az,gx,gy,gz,tempC,audioRMS";
/// The line terminator written by [`write_csv_line`].
pub const CSV_LINE_END: &str = "\r\n";
/// A buffer of this size holds every line whose values lie inside the sensor ranges
/// (|accel| < 10^4 g, |gyro| < 10^5 dps, |temp| < 10^4 °C, rms < 10^6).
pub const CSV_LINE_CAPACITY: usize = 128;

/// `Display` of a sample as one CSV line without terminator.
#[derive(Debug, Clone, Copy)]
pub struct CsvLine<'a>(pub &'a ImuSample);

impl fmt::Display for CsvLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let [ax, ay, az] = s.accel_g;
        let [gx, gy, gz] = s.gyro_dps;
        write!(
            f,
            "{},{ax:.4},{ay:.4},{az:.4},{gx:.3},{gy:.3},{gz:.3},{:.2},{:.2}",
            s.millis, s.temp_c, s.audio_rms
        )
    }
}

/// Why [`write_csv_line`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum CsvWriteError {
    /// The line does not fit the buffer; nothing useful was written.
    #[error("CSV line does not fit a buffer of {capacity} bytes")]
    BufferTooSmall {
        /// Size of the buffer given.
        capacity: usize,
    },
}

struct SliceWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let dst = self
            .buf
            .get_mut(self.at..self.at + s.len())
            .ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.at += s.len();
        Ok(())
    }
}

/// Writes `sample` as one CSV line plus [`CSV_LINE_END`] into `buf`; returns the length.
///
/// # Errors
/// [`CsvWriteError::BufferTooSmall`] when the line does not fit.
pub fn write_csv_line(sample: &ImuSample, buf: &mut [u8]) -> Result<usize, CsvWriteError> {
    let capacity = buf.len();
    let mut w = SliceWriter { buf, at: 0 };
    write!(w, "{}{CSV_LINE_END}", CsvLine(sample))
        .map_err(|_| CsvWriteError::BufferTooSmall { capacity })?;
    Ok(w.at)
}

/// One parsed CSV row. The CSV form carries no sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CsvRecord {
    /// Device time in milliseconds.
    pub millis: u32,
    /// Acceleration in g.
    pub accel_g: [f32; 3],
    /// Angular rate in dps.
    pub gyro_dps: [f32; 3],
    /// Temperature in °C.
    pub temp_c: f32,
    /// Audio RMS in counts.
    pub audio_rms: f32,
}

impl CsvRecord {
    /// The sample with sequence number `seq` (e.g. the host's line counter).
    #[must_use]
    pub const fn into_sample(self, seq: SeqNo) -> ImuSample {
        ImuSample {
            seq,
            millis: self.millis,
            accel_g: self.accel_g,
            gyro_dps: self.gyro_dps,
            temp_c: self.temp_c,
            audio_rms: self.audio_rms,
        }
    }
}

/// Why a CSV line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum CsvParseError {
    /// The line has the wrong number of comma-separated fields.
    #[error("expected 9 fields, found {found}")]
    FieldCount {
        /// Fields found.
        found: usize,
    },
    /// A field is not a number of the expected type.
    #[error("field {index} ({name}) is not a valid number")]
    Field {
        /// Zero-based field index.
        index: usize,
        /// Column name from [`CSV_HEADER`].
        name: &'static str,
    },
    /// The line is the header row, not data.
    #[error("header row")]
    Header,
}

const NAMES: [&str; 9] = [
    "millis", "ax", "ay", "az", "gx", "gy", "gz", "tempC", "audioRMS",
];

/// Parses one CSV line (with or without line end, surrounding spaces allowed).
///
/// # Errors
/// A [`CsvParseError`] for the header row, a wrong field count or a bad number.
pub fn parse_csv_line(line: &str) -> Result<CsvRecord, CsvParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim() == CSV_HEADER {
        return Err(CsvParseError::Header);
    }
    let mut fields = [""; 9];
    let mut found = 0;
    for field in line.split(',') {
        if let Some(slot) = fields.get_mut(found) {
            *slot = field.trim();
        }
        found += 1;
    }
    if found != fields.len() {
        return Err(CsvParseError::FieldCount { found });
    }
    let float = |index: usize| {
        fields[index]
            .parse::<f32>()
            .map_err(|_| CsvParseError::Field {
                index,
                name: NAMES[index],
            })
    };
    let millis = fields[0].parse::<u32>().map_err(|_| CsvParseError::Field {
        index: 0,
        name: NAMES[0],
    })?;
    Ok(CsvRecord {
        millis,
        accel_g: [float(1)?, float(2)?, float(3)?],
        gyro_dps: [float(4)?, float(5)?, float(6)?],
        temp_c: float(7)?,
        audio_rms: float(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_parses() {
        let s = ImuSample {
            seq: SeqNo(3),
            millis: 40,
            accel_g: [0.01234, -1.0, 0.5],
            gyro_dps: [-250.0, 1.2345, 0.0],
            temp_c: 24.5,
            audio_rms: 12.345,
        };
        let mut buf = [0u8; CSV_LINE_CAPACITY];
        let n = write_csv_line(&s, &mut buf).unwrap();
        let line = core::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            line,
            "40,0.0123,-1.0000,0.5000,-250.000,1.235,0.000,24.50,12.35\r\n"
        );
        let r = parse_csv_line(line).unwrap();
        assert_eq!(r.millis, 40);
        assert_eq!(r.accel_g, [0.0123, -1.0, 0.5]);
        assert_eq!(r.into_sample(SeqNo(3)).seq, SeqNo(3));
        assert_eq!(
            write_csv_line(&s, &mut buf[..10]),
            Err(CsvWriteError::BufferTooSmall { capacity: 10 })
        );
    }

    #[test]
    fn rejects_bad_lines() {
        assert_eq!(parse_csv_line(CSV_HEADER), Err(CsvParseError::Header));
        assert_eq!(
            parse_csv_line("1,2,3"),
            Err(CsvParseError::FieldCount { found: 3 })
        );
        assert_eq!(
            parse_csv_line("1,2,3,4,5,6,7,8,9,10,11"),
            Err(CsvParseError::FieldCount { found: 11 })
        );
        assert_eq!(
            parse_csv_line("-1,0,0,0,0,0,0,0,0"),
            Err(CsvParseError::Field {
                index: 0,
                name: "millis"
            })
        );
        assert_eq!(
            parse_csv_line("1,0,0,0,0,x,0,0,0"),
            Err(CsvParseError::Field {
                index: 5,
                name: "gy"
            })
        );
    }
}
