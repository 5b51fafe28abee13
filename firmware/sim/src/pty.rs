//! A pseudo-terminal that looks like the board's USB serial port to other programs.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A pseudo-terminal pair in raw mode (no echo, no line editing, no newline
/// translation), so the bytes written to it arrive unchanged at a program that opens
/// [`Pty::slave_path`] as a serial port.
///
/// The simulator keeps the slave side open too, so writes succeed while no reader is
/// attached; the kernel buffers a few KiB and then writes block until someone reads.
#[derive(Debug)]
pub struct Pty {
    master: File,
    slave: File,
    slave_path: PathBuf,
}

impl Pty {
    /// Opens a new pseudo-terminal.
    ///
    /// # Errors
    /// The OS error of `openpty`, `tcgetattr`/`tcsetattr` or `ttyname_r`.
    pub fn open() -> io::Result<Self> {
        let mut master = -1;
        let mut slave = -1;
        // SAFETY: openpty writes two descriptors into valid pointers; the name, termios
        // and window-size arguments are optional and passed as null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just returned by openpty and are owned by nobody else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        // openpty leaves both ends inheritable: a child process (e.g. the recorder a
        // test starts on the slave path) would hold the master open, and it would never
        // see the board go away when this `Pty` is dropped.
        close_on_exec(&master)?;
        close_on_exec(&slave)?;
        make_raw(&slave)?;
        let slave_path = tty_name(&slave)?;
        Ok(Self {
            master: File::from(master),
            slave: File::from(slave),
            slave_path,
        })
    }

    /// Path of the terminal to open as the device (e.g. `/dev/pts/3`).
    #[must_use]
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// A second handle on the writing side (e.g. for another thread), sharing the
    /// same terminal.
    ///
    /// # Errors
    /// The OS error of `dup`.
    pub fn try_clone_writer(&self) -> io::Result<File> {
        self.master.try_clone()
    }

    /// Bytes written but not yet read by the program on the other side.
    ///
    /// # Errors
    /// The OS error of the `FIONREAD` ioctl.
    pub fn unread(&self) -> io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD stores one c_int through the valid pointer.
        if unsafe { libc::ioctl(self.slave.as_raw_fd(), libc::FIONREAD, &mut n) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Waits (polling every 20 ms) until the reader has taken every byte or `timeout`
    /// passed; returns whether everything was read. Closing a pseudo-terminal
    /// discards unread bytes, so call this before dropping it at the end of a run.
    ///
    /// # Errors
    /// As [`Pty::unread`].
    pub fn wait_drained(&self, timeout: std::time::Duration) -> io::Result<bool> {
        let give_up = std::time::Instant::now() + timeout;
        // Bytes written to the master reach the slave's queue asynchronously, so one
        // empty reading can come too early: require two, 20 ms apart.
        let mut empty_before = false;
        loop {
            let empty = self.unread()? == 0;
            if empty && empty_before {
                return Ok(true);
            }
            empty_before = empty;
            if std::time::Instant::now() >= give_up {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Write for Pty {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.master.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.master.flush()
    }
}

fn close_on_exec(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a valid descriptor only read and set its flags.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn make_raw(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: termios is plain data; tcgetattr fills it for a valid descriptor.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a valid open terminal descriptor and `tio` a valid termios.
    if unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut tio) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: cfmakeraw only edits the struct it is given.
    unsafe { libc::cfmakeraw(&mut tio) };
    // SAFETY: as for tcgetattr.
    if unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &tio) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn tty_name(fd: &OwnedFd) -> io::Result<PathBuf> {
    let mut name = [0 as libc::c_char; 256];
    // SAFETY: the buffer and its length are valid; ttyname_r NUL-terminates on success.
    let rc = unsafe { libc::ttyname_r(fd.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: ttyname_r succeeded, so `name` holds a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name.as_ptr()) };
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}
