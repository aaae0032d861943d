//! The frame slot: the newest frame of one stream, and a way to wait for a newer one.
//!
//! This is the whole "always live" mechanism in user space. The source thread overwrites the
//! slot; it never queues. Each client thread remembers the generation it last sent and asks for
//! anything newer; if three frames arrived while it was writing, it gets only the third. So a
//! slow client skips frames and no per-client backlog can exist. Frame bytes live in an `Arc`:
//! a thousand clients share one copy.
//!
//! Readers take the `RwLock` only for as long as it takes to clone an `Arc`. Waiting happens on
//! a separate mutex + condvar pair, and the writer bumps the generation under the write lock and
//! then notifies under the mutex, so a reader that checked the generation and went to sleep can
//! never miss the wake-up.
//!
//! The slot holds any `Arc<T>` and does not look inside it; the generation is the only count
//! (it is what clients compare, and `generation - last_sent - 1` is how many they skipped).
//! Besides the frame and the counter, one thing: `close`, which wakes every waiter for good
//! when the server stops (waiters sleep on the condvar, which no channel can wake).

use parking_lot::{Condvar, Mutex, RwLock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a waiting client gets back.
#[derive(Debug)]
pub enum Next<T> {
    /// A frame newer than the one asked about, with its generation.
    Frame(Arc<T>, u64),
    /// Nothing newer arrived within the timeout.
    Timeout,
    /// The slot was closed: the server is shutting down.
    Closed,
}

#[derive(Debug)]
struct Latest<T> {
    generation: u64,
    frame: Option<Arc<T>>,
}

/// The newest frame of one stream. Owned by its stream (the hub), shared by reference.
#[derive(Debug)]
pub struct FrameSlot<T> {
    latest: RwLock<Latest<T>>,
    /// Guards nothing but the sleep/wake hand-off (and holds "closed"); see the module docs.
    wake: Mutex<bool>,
    cond: Condvar,
    /// "closed", readable without the mutex for the fast path of `wait_newer`.
    closed: AtomicBool,
}

impl<T> Default for FrameSlot<T> {
    fn default() -> Self {
        FrameSlot {
            latest: RwLock::new(Latest {
                generation: 0,
                frame: None,
            }),
            wake: Mutex::new(false),
            cond: Condvar::new(),
            closed: AtomicBool::new(false),
        }
    }
}

impl<T> FrameSlot<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the newest frame and wakes every waiting client. Returns its generation.
    pub fn publish(&self, frame: Arc<T>) -> u64 {
        let generation = {
            let mut latest = self.latest.write();
            latest.generation += 1;
            latest.frame = Some(frame);
            latest.generation
        };
        let _guard = self.wake.lock();
        self.cond.notify_all();
        generation
    }

    /// The newest frame and its generation, if any frame arrived yet.
    pub fn latest(&self) -> Option<(Arc<T>, u64)> {
        let latest = self.latest.read();
        latest.frame.clone().map(|f| (f, latest.generation))
    }

    /// Waits until a frame newer than generation `seen` is there, and returns the newest.
    /// `seen = 0` returns the current frame at once if there is one.
    pub fn wait_newer(&self, seen: u64, timeout: Duration) -> Next<T> {
        // Fast path, the common one for a busy client: a newer frame is already there. Only the
        // read lock; the wake mutex is for sleeping, and every client taking it for every frame
        // made it the most contended lock in the process.
        {
            let latest = self.latest.read();
            if latest.generation > seen {
                if let Some(frame) = &latest.frame {
                    if !self.closed.load(Ordering::Acquire) {
                        return Next::Frame(frame.clone(), latest.generation);
                    }
                }
            }
        }
        let deadline = Instant::now() + timeout;
        let mut closed = self.wake.lock();
        loop {
            if *closed {
                return Next::Closed;
            }
            {
                let latest = self.latest.read();
                if latest.generation > seen {
                    if let Some(frame) = &latest.frame {
                        return Next::Frame(frame.clone(), latest.generation);
                    }
                }
            }
            if self.cond.wait_until(&mut closed, deadline).timed_out() {
                return if *closed { Next::Closed } else { Next::Timeout };
            }
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Wakes every waiter for good; later waits return [`Next::Closed`] at once.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        *self.wake.lock() = true;
        self.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn waiter_gets_only_the_newest() {
        let slot = FrameSlot::<u64>::new();
        for i in 1..=5u64 {
            slot.publish(Arc::new(i));
        }
        match slot.wait_newer(0, Duration::from_millis(10)) {
            Next::Frame(f, g) => {
                assert_eq!(*f, 5);
                assert_eq!(g, 5);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            slot.wait_newer(5, Duration::from_millis(10)),
            Next::Timeout
        ));
    }

    #[test]
    fn publish_wakes_a_sleeping_waiter_and_close_ends_it() {
        let slot = Arc::new(FrameSlot::<u64>::new());
        let s = slot.clone();
        let t = thread::spawn(move || {
            let mut got = Vec::new();
            let mut seen = 0;
            loop {
                match s.wait_newer(seen, Duration::from_secs(5)) {
                    Next::Frame(f, g) => {
                        got.push(*f);
                        seen = g;
                    }
                    Next::Timeout => panic!("missed a wake-up"),
                    Next::Closed => return got,
                }
            }
        });
        for i in 1..=200u64 {
            slot.publish(Arc::new(i));
            if i % 20 == 0 {
                thread::sleep(Duration::from_millis(2));
            }
        }
        thread::sleep(Duration::from_millis(20));
        slot.close();
        let got = t.join().unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
        assert_eq!(got.last(), Some(&200), "ends on the newest");
    }
}
