//! The last seconds of a stream, in memory: what the camera saw before the doorbell rang.
//!
//! Every relay keeps only the newest frame; this ring keeps the frames of the last
//! `--history` seconds, up to `--history-bytes`, whichever is less. It holds the very frames
//! the slot hands to viewers (`Arc<Frame>`): a frame costs its bytes once, whether it is the
//! newest, in the ring, or both. The newest-frame path is untouched: the source pushes each
//! real frame here after publishing it (one lock per camera frame, never per viewer), and
//! readers (`/snapshot?ago=`, `/clip`) take `Arc`s out under the same short lock, never
//! copies.
//!
//! Memory: the ring counts each frame as its wire bytes plus a fixed overhead
//! ([`FRAME_OVERHEAD`]: the `Frame` and its slot in the queue), and drops the oldest until the
//! count is within `--history-bytes`; so it holds at most the byte cap, and a frame a reader
//! still streams out lives until that reader is done with it (bounded by the clip limit,
//! [`crate::http`]'s `MAX_CLIPS`).

use crate::frame::Frame;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a frame in the ring costs besides its bytes: the `Frame` (its times, its wire
/// buffer's pointer and lengths) and the ring's pointer to it, rounded up.
pub const FRAME_OVERHEAD: usize = std::mem::size_of::<Frame>() + 2 * std::mem::size_of::<usize>();

/// `--history` and `--history-bytes` of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_age: Duration,
    pub max_bytes: usize,
}

impl Limits {
    /// Defaults that fit a Raspberry Pi out of the box: 30 s, the "what happened before"
    /// people ask for, and 8 MiB a stream, so four cameras hold at most 32 MiB (the
    /// `mjpeg-bench scenario pi` budget is 64 MiB for everything). A 640x480 15 fps camera
    /// at 30 KB a frame needs 13.5 MB for 30 s, so there the byte cap decides (about 18 s).
    pub const DEFAULT: Limits = Limits {
        max_age: Duration::from_secs(30),
        max_bytes: 8 << 20,
    };

    pub fn enabled(&self) -> bool {
        !self.max_age.is_zero() && self.max_bytes > 0
    }
}

/// The ring of one stream.
#[derive(Debug)]
pub struct History {
    limits: Limits,
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    frames: VecDeque<Arc<Frame>>,
    /// What the frames in the ring cost, by [`cost`].
    bytes: usize,
    /// Frames pushed since start (for `/metrics`).
    pushed: u64,
}

/// What the ring holds now, for `/status` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Held {
    pub frames: usize,
    pub bytes: usize,
    /// From the oldest frame held to now.
    pub seconds: f64,
    pub pushed: u64,
}

fn cost(f: &Frame) -> usize {
    f.wire.len() + FRAME_OVERHEAD
}

impl History {
    pub fn new(limits: Limits) -> History {
        History {
            limits,
            ring: Mutex::new(Ring::default()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Keeps `frame` (the newest), dropping what is now too old or over the byte cap.
    pub fn push(&self, frame: Arc<Frame>) {
        let c = cost(&frame);
        let now = frame.arrived_at;
        let mut ring = self.ring.lock();
        ring.bytes += c;
        ring.pushed += 1;
        ring.frames.push_back(frame);
        while let Some(old) = ring.frames.front() {
            let too_old = now.saturating_duration_since(old.arrived_at) > self.limits.max_age;
            if !too_old && ring.bytes <= self.limits.max_bytes {
                break;
            }
            let c = cost(old);
            ring.bytes -= c;
            ring.frames.pop_front();
        }
    }

    /// The frame whose arrival is nearest to `at`, if any is held.
    pub fn nearest(&self, at: Instant) -> Option<Arc<Frame>> {
        let ring = self.ring.lock();
        let i = ring.frames.partition_point(|f| f.arrived_at < at);
        let after = ring.frames.get(i);
        let before = i.checked_sub(1).and_then(|j| ring.frames.get(j));
        let gap = |f: &Arc<Frame>| {
            if f.arrived_at > at {
                f.arrived_at - at
            } else {
                at - f.arrived_at
            }
        };
        match (before, after) {
            (Some(b), Some(a)) if gap(a) < gap(b) => Some(a.clone()),
            (Some(b), _) => Some(b.clone()),
            (None, a) => a.cloned(),
        }
    }

    /// The frames that arrived from `from` to `to` (wall clock, both included), oldest first:
    /// shared, not copied.
    /// Those whose capture times, in whole microseconds since the epoch (as `X-Timestamp`
    /// writes them), are in `from..=to`: a time copied from a part header takes its frame.
    pub fn between(&self, from_us: u64, to_us: u64) -> Vec<Arc<Frame>> {
        let ring = self.ring.lock();
        ring.frames
            .iter()
            .filter(|f| (from_us..=to_us).contains(&f.captured_micros()))
            .cloned()
            .collect()
    }

    /// The frames that came in since `from` (this relay's clock), oldest first: shared.
    pub fn since(&self, from: Instant) -> Vec<Arc<Frame>> {
        let ring = self.ring.lock();
        let i = ring.frames.partition_point(|f| f.arrived_at < from);
        ring.frames.range(i..).cloned().collect()
    }

    /// The oldest and the newest frame held.
    pub fn span(&self) -> Option<(Arc<Frame>, Arc<Frame>)> {
        let ring = self.ring.lock();
        Some((ring.frames.front()?.clone(), ring.frames.back()?.clone()))
    }

    pub fn held(&self) -> Held {
        let ring = self.ring.lock();
        Held {
            frames: ring.frames.len(),
            bytes: ring.bytes,
            seconds: ring
                .frames
                .front()
                .map_or(0.0, |f| f.arrived_at.elapsed().as_secs_f64()),
            pushed: ring.pushed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testjpeg::{jpeg_with_seq, seq_of};

    fn frame(seq: u64, pad: usize) -> Arc<Frame> {
        Arc::new(Frame::new(&jpeg_with_seq(seq, pad)))
    }

    #[test]
    fn the_byte_cap_holds_whatever_comes() {
        let h = History::new(Limits {
            max_age: Duration::from_secs(3600),
            max_bytes: 50_000,
        });
        for i in 0..500 {
            h.push(frame(i, (i as usize * 7919) % 3000));
            let held = h.held();
            assert!(held.bytes <= 50_000, "{held:?}");
        }
        let held = h.held();
        assert!(held.frames > 10, "{held:?}");
        // The newest are the ones kept, in order.
        let (oldest, newest) = h.span().unwrap();
        assert_eq!(seq_of(newest.jpeg()), Some(499));
        assert_eq!(seq_of(oldest.jpeg()), Some(500 - held.frames as u64));
        // A single frame over the cap is not kept at all.
        h.push(frame(1000, 60_000));
        assert_eq!(h.held().frames, 0);
        assert_eq!(h.held().bytes, 0);
    }

    #[test]
    fn old_frames_leave_and_the_nearest_is_found() {
        let h = History::new(Limits {
            max_age: Duration::from_millis(300),
            max_bytes: 1 << 20,
        });
        let t0 = Instant::now();
        for i in 0..8 {
            h.push(frame(i, 10));
            std::thread::sleep(Duration::from_millis(50));
        }
        let held = h.held();
        assert!(held.frames <= 8 && held.frames >= 5, "{held:?}");
        let got = h.nearest(Instant::now()).unwrap();
        assert_eq!(seq_of(got.jpeg()), Some(7));
        // Before the oldest held: the oldest.
        let got = h.nearest(t0).unwrap();
        let (oldest, _) = h.span().unwrap();
        assert!(Arc::ptr_eq(&got, &oldest));
        // Exactly between: one of the two neighbours, never another.
        let all = h.between(0, u64::MAX);
        assert_eq!(all.len(), held.frames);
        let (a, b) = (&all[1], &all[2]);
        let mid = a.arrived_at + (b.arrived_at - a.arrived_at) / 2;
        let got = h.nearest(mid).unwrap();
        assert!(Arc::ptr_eq(&got, a) || Arc::ptr_eq(&got, b));
    }

    #[test]
    fn frames_are_shared_not_copied() {
        let h = History::new(Limits::DEFAULT);
        let f = frame(1, 100);
        h.push(f.clone());
        let (_, newest) = h.span().unwrap();
        assert!(Arc::ptr_eq(&f, &newest));
    }
}
