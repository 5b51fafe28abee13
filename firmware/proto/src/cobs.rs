//! Consistent Overhead Byte Stuffing: removes every 0x00 from a frame so that 0x00 can
//! delimit frames on the serial line.

/// Largest encoded size of `len` bytes of input (without the delimiter).
pub const fn max_encoded_len(len: usize) -> usize {
    len + len / 254 + 1
}

/// Why a run of bytes is not valid COBS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CobsError {
    /// A code byte points past the end of the run.
    Truncated,
    /// A 0x00 inside the run (only possible when called on undelimited input).
    ZeroByte,
    /// The decoded bytes do not fit the output buffer.
    Overflow,
}

/// Encodes `src` into `dst`; returns the encoded length, or `None` when `dst` is shorter
/// than [`max_encoded_len`]`(src.len())`.
pub(crate) fn encode(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    if dst.len() < max_encoded_len(src.len()) {
        return None;
    }
    // Indexing below cannot go out of bounds: `out` never exceeds
    // max_encoded_len(src.len()) - 1, checked above.
    let mut code_at = 0;
    let mut out = 1;
    let mut code: u8 = 1;
    for &byte in src {
        if byte == 0 {
            dst[code_at] = code;
            code_at = out;
            out += 1;
            code = 1;
        } else {
            dst[out] = byte;
            out += 1;
            code += 1;
            if code == 0xFF {
                dst[code_at] = code;
                code_at = out;
                out += 1;
                code = 1;
            }
        }
    }
    dst[code_at] = code;
    Some(out)
}

/// Decodes one undelimited COBS run into `dst`; returns the decoded length.
pub(crate) fn decode(src: &[u8], dst: &mut [u8]) -> Result<usize, CobsError> {
    // One scan for the whole run (cheaper than one per block).
    if src.contains(&0) {
        return Err(CobsError::ZeroByte);
    }
    let mut i = 0;
    let mut out = 0;
    while let Some(&code) = src.get(i) {
        i += 1;
        // `code` is not 0: the run holds no zero (checked above).
        let n = usize::from(code.saturating_sub(1));
        let block = src.get(i..i + n).ok_or(CobsError::Truncated)?;
        dst.get_mut(out..out + n)
            .ok_or(CobsError::Overflow)?
            .copy_from_slice(block);
        out += n;
        i += n;
        if code != 0xFF && i < src.len() {
            *dst.get_mut(out).ok_or(CobsError::Overflow)? = 0;
            out += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &[u8]) {
        let mut enc = [0u8; 1200];
        let n = encode(data, &mut enc).unwrap();
        assert!(n <= max_encoded_len(data.len()));
        assert!(!enc[..n].contains(&0));
        let mut dec = [0u8; 1200];
        let m = decode(&enc[..n], &mut dec).unwrap();
        assert_eq!(&dec[..m], data);
    }

    #[test]
    fn known_vectors() {
        let mut enc = [0u8; 16];
        let n = encode(&[0x11, 0x22, 0x00, 0x33], &mut enc).unwrap();
        assert_eq!(&enc[..n], &[0x03, 0x11, 0x22, 0x02, 0x33]);
        let n = encode(&[0x00], &mut enc).unwrap();
        assert_eq!(&enc[..n], &[0x01, 0x01]);
        let n = encode(&[], &mut enc).unwrap();
        assert_eq!(&enc[..n], &[0x01]);
    }

    #[test]
    fn long_runs_round_trip() {
        let mut data = [0u8; 1000];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 255) as u8 + 1;
        }
        for len in [0, 1, 253, 254, 255, 507, 508, 509, 1000] {
            round_trip(&data[..len]);
        }
        data[254] = 0;
        data[600] = 0;
        round_trip(&data);
    }

    #[test]
    fn malformed_runs_are_rejected() {
        let mut dec = [0u8; 8];
        assert_eq!(decode(&[0x05, 1, 2], &mut dec), Err(CobsError::Truncated));
        assert_eq!(decode(&[0x02, 0], &mut dec), Err(CobsError::ZeroByte));
        assert_eq!(decode(&[0xFF; 3], &mut dec), Err(CobsError::Truncated));
        let mut small = [0u8; 1];
        assert_eq!(decode(&[0x03, 1, 2], &mut small), Err(CobsError::Overflow));
    }
}
