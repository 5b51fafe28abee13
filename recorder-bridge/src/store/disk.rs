//! Free disk space (statvfs) and the projected time until the disk is full.

use std::path::Path;
use std::time::Duration;

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly sized out
    // parameter that statvfs fills on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::useless_conversion)] // the field widths differ between platforms
    Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// Time until `free` bytes are used up at `bytes_per_sec`; `None` when nothing is
/// being written.
pub fn time_to_full(free: u64, bytes_per_sec: f64) -> Option<Duration> {
    if bytes_per_sec <= 0.0 || !bytes_per_sec.is_finite() {
        return None;
    }
    Some(Duration::from_secs_f64(free as f64 / bytes_per_sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_tmp_is_readable() {
        assert!(free_bytes(Path::new("/tmp")).unwrap() > 0);
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
        assert_eq!(time_to_full(100, 10.0), Some(Duration::from_secs(10)));
        assert_eq!(time_to_full(100, 0.0), None);
    }
}
