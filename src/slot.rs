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

use crate::multipart::Wire;
use parking_lot::{Condvar, Mutex, RwLock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// One JPEG frame as received from the upstream, shared by every client that sends it.
#[derive(Debug)]
pub struct Frame {
    /// Counts frames accepted from this stream's sources, from 1.
    pub seq: u64,
    /// Wall-clock arrival time (for `X-Timestamp`).
    pub arrived: SystemTime,
    /// Monotonic arrival time (for ages and latency).
    pub arrived_at: Instant,
    /// The JPEG in the form clients send it; see [`Wire`].
    pub wire: Wire,
}

impl Frame {
    pub fn new(seq: u64, jpeg: &[u8]) -> Frame {
        let arrived = SystemTime::now();
        Frame {
            seq,
            arrived,
            arrived_at: Instant::now(),
            wire: Wire::new(jpeg, arrived),
        }
    }

    /// The JPEG, `FFD8` … `FFD9`.
    pub fn jpeg(&self) -> &[u8] {
        self.wire.jpeg()
    }
}

/// What a waiting client gets back.
#[derive(Debug)]
pub enum Next {
    /// A frame newer than the one asked about, with its generation.
    Frame(Arc<Frame>, u64),
    /// Nothing newer arrived within the timeout.
    Timeout,
    /// The slot was closed: the server is shutting down.
    Closed,
}

#[derive(Debug, Default)]
struct Latest {
    generation: u64,
    frame: Option<Arc<Frame>>,
}

/// The newest frame of one stream. Share it as `Arc<FrameSlot>`.
#[derive(Debug, Default)]
pub struct FrameSlot {
    latest: RwLock<Latest>,
    /// Guards nothing but the sleep/wake hand-off (and holds "closed"); see the module docs.
    wake: Mutex<bool>,
    cond: Condvar,
    /// "closed", readable without the mutex for the fast path of `wait_newer`.
    closed: AtomicBool,
}

impl FrameSlot {
    pub fn new() -> FrameSlot {
        FrameSlot::default()
    }

    /// Replaces the newest frame and wakes every waiting client.
    pub fn publish(&self, frame: Arc<Frame>) -> u64 {
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
    pub fn latest(&self) -> Option<(Arc<Frame>, u64)> {
        let latest = self.latest.read();
        latest.frame.clone().map(|f| (f, latest.generation))
    }

    /// Waits until a frame newer than generation `seen` is there, and returns the newest.
    /// `seen = 0` returns the current frame at once if there is one.
    pub fn wait_newer(&self, seen: u64, timeout: Duration) -> Next {
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

    /// Wakes every waiter for good; later waits return [`Next::Closed`] at once.
    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

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
        let slot = FrameSlot::new();
        for i in 1..=5 {
            slot.publish(Arc::new(Frame::new(i, &[i as u8])));
        }
        match slot.wait_newer(0, Duration::from_millis(10)) {
            Next::Frame(f, g) => {
                assert_eq!(f.seq, 5);
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
        let slot = Arc::new(FrameSlot::new());
        let s = slot.clone();
        let t = thread::spawn(move || {
            let mut got = Vec::new();
            let mut seen = 0;
            loop {
                match s.wait_newer(seen, Duration::from_secs(5)) {
                    Next::Frame(f, g) => {
                        got.push(f.seq);
                        seen = g;
                    }
                    Next::Timeout => panic!("missed a wake-up"),
                    Next::Closed => return got,
                }
            }
        });
        for i in 1..=200 {
            slot.publish(Arc::new(Frame::new(i, &[0xFF])));
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
