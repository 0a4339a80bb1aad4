//! Pseudo-terminals for `exec -t`: a pty pair from the kernel (`/dev/ptmx` through rustix), the
//! process started on the terminal side as a session leader whose controlling terminal it is
//! (util-linux `setsid -c`, so no `pre_exec` hook, which would need `unsafe`), and resizes of
//! the window, which the kernel passes to the process as `SIGWINCH`.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

/// The terminal's size before the client sends its own.
const DEFAULT_SIZE: (u16, u16) = (80, 24);

/// A pseudo-terminal: the side the session reads and writes, and the side the process gets.
pub struct Pty {
    /// The controlling side (reads the process's output, writes its input).
    pub master: OwnedFd,
    /// The terminal the process gets as stdin, stdout and stderr.
    pub slave: File,
}

/// Opens a pseudo-terminal of the default size.
pub fn open() -> std::io::Result<Pty> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(name.as_bytes()));
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(path)?;
    resize(&master, DEFAULT_SIZE.0, DEFAULT_SIZE.1)?;
    Ok(Pty { master, slave })
}

/// Sets the window size of the terminal (`width` columns, `height` rows).
pub fn resize(master: &OwnedFd, width: u16, height: u16) -> std::io::Result<()> {
    tcsetwinsize(
        master,
        Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

/// The argv prefix that makes the process a session leader with its standard input (the
/// terminal) as controlling terminal; `-w` waits for the command should `setsid` have to fork.
pub const SESSION_LEADER: &[&str] = &["setsid", "-w", "-c"];
