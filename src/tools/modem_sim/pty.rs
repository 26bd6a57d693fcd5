//! A pseudo-terminal for the simulated modem: the simulator holds the
//! master side, the driver opens the slave device (`/dev/pts/N`) as if it
//! were a USB modem's serial port.
//!
//! No unsafe code: nix's `openpty` and `read`/`write` are safe wrappers,
//! and tokio's `AsyncFd` turns the non-blocking master into an async stream.

use std::{
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    pin::Pin,
    task::{ready, Context, Poll},
};

use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    pty::openpty,
    sys::termios::{self, SetArg},
    unistd,
};
use tokio::io::{unix::AsyncFd, AsyncRead, AsyncWrite, ReadBuf};

/// The master side of a pseudo-terminal.
pub struct Pty {
    master: AsyncFd<OwnedFd>,
    /// Held open so the terminal lives on while no driver has it open
    /// (otherwise the master would read EIO between two drivers).
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    /// Opens a new pseudo-terminal in raw mode (no echo, no line editing:
    /// bytes pass as they are, like on a real serial line).
    pub fn open() -> io::Result<Pty> {
        let pair = openpty(None, None)?;
        let mut settings = termios::tcgetattr(&pair.slave)?;
        termios::cfmakeraw(&mut settings);
        termios::tcsetattr(&pair.slave, SetArg::TCSANOW, &settings)?;
        let path = unistd::ttyname(&pair.slave)?;
        let flags = OFlag::from_bits_truncate(fcntl(&pair.master, FcntlArg::F_GETFL)?);
        fcntl(&pair.master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // `AsyncFd::new` is deprecated because it cannot know that an
        // arbitrary `AsRawFd` keeps returning the same open descriptor; an
        // `OwnedFd` does by construction (it owns the descriptor and never
        // swaps it), which is exactly the condition tokio asks for, so the
        // safe constructor is sound here.
        #[allow(deprecated)]
        let master = AsyncFd::new(pair.master)?;
        Ok(Pty {
            master,
            _slave: pair.slave,
            path,
        })
    }

    /// The device a driver opens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.master.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| unistd::read(fd.get_ref(), unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.master.poll_write_ready(cx))?;
            match guard.try_io(|fd| unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
