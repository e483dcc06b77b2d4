//! A channel the main loop can `poll(2)`: helper threads send events and write a byte to a
//! pipe, whose read end sits next to the signalfd in the main loop's poll set.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::sync::Arc;

use nix::fcntl::OFlag;

/// Errors creating the channel.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// `pipe2(2)` failed.
    #[error("cannot create wake-up pipe: {0}")]
    Pipe(#[source] nix::errno::Errno),
}

/// The sending half; cheap to clone into threads.
#[derive(Debug)]
pub struct Sender<T> {
    tx: mpsc::Sender<T>,
    wake: Arc<OwnedFd>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            wake: Arc::clone(&self.wake),
        }
    }
}

impl<T> Sender<T> {
    /// Sends `event` and wakes the main loop.
    pub fn send(&self, event: T) {
        if self.tx.send(event).is_ok() {
            // A full pipe already means "wake up"; ignore EAGAIN.
            let _ = nix::unistd::write(&*self.wake, &[1u8]);
        }
    }
}

/// The receiving half, owned by the main loop.
#[derive(Debug)]
pub struct Receiver<T> {
    rx: mpsc::Receiver<T>,
    wake: OwnedFd,
}

impl<T> Receiver<T> {
    /// The fd to poll for `POLLIN`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Clears the wake-up pipe and returns every queued event.
    pub fn drain(&self) -> Vec<T> {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&self.wake), &mut buf), Ok(n) if n > 0)
        {
        }
        self.rx.try_iter().collect()
    }
}

/// A new channel.
pub fn channel<T>() -> Result<(Sender<T>, Receiver<T>), EventError> {
    let (read, write) =
        nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(EventError::Pipe)?;
    let (tx, rx) = mpsc::channel();
    Ok((
        Sender {
            tx,
            wake: Arc::new(write),
        },
        Receiver { rx, wake: read },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    #[test]
    fn send_wakes_poll_and_drain_clears() {
        let (tx, rx) = channel::<u32>().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || tx2.send(7)).join().unwrap();
        tx.send(8);
        let mut fds = [PollFd::new(rx.fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(1000u16)).unwrap(), 1);
        assert_eq!(rx.drain(), vec![7, 8]);
        let mut fds = [PollFd::new(rx.fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
    }
}
