//! One way to say "stop": a [`Shutdown`] token, cloned into every thread that runs until the
//! relay stops (sources, the NO SIGNAL watchdog, the HTTP acceptor, `exec:` spawning), and the
//! one [`Trigger`] that stops them, held by `main` (the signal thread pulls it).
//!
//! It is a crossbeam channel on which nothing is ever sent: pulling the trigger drops the only
//! sender, and every receiver sees the disconnection at once. So "sleep for this backoff unless
//! we are stopping" is one `recv_timeout`, and a thread that must also wait on other channels
//! can `select!` on [`Shutdown::receiver`].
//!
//! Client threads are the one exception: they sleep on their stream's slot condvar, which a
//! channel cannot wake, so the HTTP side closes every slot when the token says stop
//! ([`crate::slot::FrameSlot::close`]): the same event, delivered where they wait.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use parking_lot::Mutex;
use std::time::Duration;

/// Cheap to clone; see the module docs.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: Receiver<()>,
}

/// Stops every [`Shutdown`] made with it. Pulling it twice is harmless.
#[derive(Debug)]
pub struct Trigger {
    tx: Mutex<Option<Sender<()>>>,
}

/// A new token and its trigger.
pub fn channel() -> (Trigger, Shutdown) {
    // Zero capacity: nothing is ever sent; the channel only carries its disconnection.
    let (tx, rx) = crossbeam_channel::bounded(0);
    (
        Trigger {
            tx: Mutex::new(Some(tx)),
        },
        Shutdown { rx },
    )
}

impl Trigger {
    pub fn pull(&self) {
        self.tx.lock().take();
    }
}

impl Shutdown {
    /// Whether the trigger was pulled.
    pub fn is_stopping(&self) -> bool {
        matches!(self.rx.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Sleeps `d`, or less if the trigger is pulled meanwhile; true means stop.
    pub fn sleep(&self, d: Duration) -> bool {
        !matches!(self.rx.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }

    /// For `select!` alongside other channels: ready (disconnected) once stopping.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn pulling_wakes_a_sleeper_and_every_clone() {
        let (trigger, token) = super::channel();
        let other = token.clone();
        assert!(!token.is_stopping());
        assert!(!token.sleep(Duration::from_millis(5)));
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            assert!(other.sleep(Duration::from_secs(10)));
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        trigger.pull();
        trigger.pull();
        assert!(t.join().unwrap() < Duration::from_secs(5));
        assert!(token.is_stopping());
        assert!(token.sleep(Duration::from_secs(10)));
    }
}
