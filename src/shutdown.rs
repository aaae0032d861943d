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

/// A token that says stop when `parent` does or when its own trigger is pulled: one stream's
/// sources, which `SIGHUP` may end while the relay goes on. One small thread per child waits
/// on both and ends with either, so the threads are bounded by the streams configured.
pub fn child(parent: &Shutdown, name: &str) -> std::io::Result<(Trigger, Shutdown)> {
    let (own_trigger, own) = channel();
    let (out_trigger, out) = channel();
    let parent = parent.clone();
    std::thread::Builder::new()
        .name(format!("stop-{name}"))
        .stack_size(32 * 1024)
        .spawn(move || {
            crossbeam_channel::select! {
                recv(parent.rx) -> _ => {},
                recv(own.rx) -> _ => {},
            }
            out_trigger.pull();
        })?;
    Ok((own_trigger, out))
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

    #[test]
    fn a_child_stops_with_its_parent_or_alone() {
        let (parent_trigger, parent) = super::channel();
        let (a_trigger, a) = super::child(&parent, "a").unwrap();
        let (_b_trigger, b) = super::child(&parent, "b").unwrap();
        a_trigger.pull();
        assert!(a.sleep(Duration::from_secs(10)));
        // The control: the sibling and the parent go on.
        assert!(!b.sleep(Duration::from_millis(50)) && !parent.is_stopping());
        parent_trigger.pull();
        assert!(b.sleep(Duration::from_secs(10)));
    }
}
