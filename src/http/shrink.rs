//! One-off smaller pictures: a sized `/snapshot` and the frames of a sized `/clip`.
//!
//! A viewer's size is made once for all its viewers by a transcoder ([`crate::tiers`]); a
//! snapshot or a clip asks for one picture (or one run of pictures) and goes. Made on the
//! request's own thread they had no bound: 24 parallel `/snapshot?width=1` of a 4K camera took
//! the relay from 4 MB to 672 MB and it kept 530 MB (each decode is ~3 bytes a pixel, and
//! glibc keeps what a thread's arena freed). So:
//!
//! * a snapshot of a size a transcoder is making now gets that transcoder's picture of the same
//!   camera frame, and one like a picture made lately (same camera frame, size and quality)
//!   gets that one: no decode at all;
//! * anything else is made on a codec thread (the decoder needs more stack than a request
//!   thread's 128 KiB), at most [`AT_ONCE`] at a time for the whole relay; a request waits up
//!   to [`WAIT`] for its turn, then gets `503` with `Retry-After`;
//! * after each, the allocator is asked to hand freed memory back to the system
//!   (`malloc_trim`), so a burst leaves no hundreds of megabytes behind.

use crate::frame::Frame;
use crate::hub::Stream;
use crate::scale::{self, ShrinkError};
use crate::tiers::Size;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One-off decodes running at once, relay-wide. Two keep a burst of dashboard snapshots
/// moving on two cores and bound the memory to two pictures' worth.
pub const AT_ONCE: usize = 2;
/// Pictures remembered: a few sizes and qualities of the newest frame of a few streams.
const REMEMBERED: usize = 8;
/// How long a request waits for its turn before `503`.
pub const WAIT: Duration = Duration::from_secs(5);

/// The places for one-off decodes (owned by the HTTP side's shared state).
#[derive(Debug, Default)]
pub struct OneOffs {
    busy: Mutex<usize>,
    freed: Condvar,
    /// The last [`REMEMBERED`] pictures made, with what each was made of: a burst of the
    /// same requests (a dashboard's tiles, a client that asks 24 times at once) is one decode
    /// each, the others wait their turn and find it made. Small frames, newest last.
    made: Mutex<Vec<(Made, Arc<Frame>)>>,
}

/// What a one-off picture was made of: the stream, its camera frame, the size and quality.
#[derive(Debug, PartialEq)]
struct Made {
    stream: String,
    arrived_at: Instant,
    size: Size,
}

/// Why a one-off picture was not made.
#[derive(Debug)]
pub enum Refused {
    /// Every place stayed taken for [`WAIT`]: try again shortly (`503`, `Retry-After`).
    Busy,
    /// The picture itself: too large, or does not decode.
    Shrink(ShrinkError),
}

impl OneOffs {
    /// `work` on a codec thread once a place is free, then memory handed back. `Busy` when no
    /// place came free within [`WAIT`].
    pub fn run<T: Send>(&self, name: &str, work: impl FnOnce() -> T + Send) -> Result<T, Refused> {
        let deadline = Instant::now() + WAIT;
        {
            let mut busy = self.busy.lock();
            while *busy >= AT_ONCE {
                if self.freed.wait_until(&mut busy, deadline).timed_out() && *busy >= AT_ONCE {
                    return Err(Refused::Busy);
                }
            }
            *busy += 1;
        }
        let made = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name(name.into())
                .stack_size(scale::CODEC_STACK)
                .spawn_scoped(s, || scale::as_codec_thread(work))
                .map_err(|e| Refused::Shrink(ShrinkError::Codec(e.to_string())))?
                .join()
                .map_err(|_| Refused::Shrink(ShrinkError::Codec("failed".into())))
        });
        scale::give_back_memory();
        *self.busy.lock() -= 1;
        self.freed.notify_one();
        made
    }
}

/// `frame` at `size`: the picture the size's transcoder made of this very frame if it runs,
/// else made here under a place of `one_offs`, decoding at most `max_pixels`.
pub fn picture(
    stream: &Stream,
    frame: &Arc<Frame>,
    size: Size,
    max_pixels: usize,
    one_offs: &OneOffs,
) -> Result<Arc<Frame>, Refused> {
    let made_already = stream
        .tiers
        .snapshot()
        .into_iter()
        .filter(|t| t.size == size)
        .find_map(|t| t.feed.slot.latest())
        .map(|(small, _)| small)
        .filter(|small| small.arrived_at == frame.arrived_at);
    if let Some(small) = made_already {
        return Ok(small);
    }
    let made = Made {
        stream: stream.name.clone(),
        arrived_at: frame.arrived_at,
        size,
    };
    let found = || {
        let remembered = one_offs.made.lock();
        remembered
            .iter()
            .find(|(m, _)| *m == made)
            .map(|(_, f)| f.clone())
    };
    if let Some(small) = found() {
        return Ok(small);
    }
    let small = one_offs
        .run("snapshot-size", || {
            // Made by the request before this one while this one waited for its place?
            if let Some(small) = found() {
                return Ok(small);
            }
            let jpeg = scale::shrink(frame.jpeg(), size.level, size.quality, max_pixels)?;
            Ok(Arc::new(Frame::derived(&jpeg, frame)))
        })?
        .map_err(Refused::Shrink)?;
    let mut remembered = one_offs.made.lock();
    if !remembered.iter().any(|(m, _)| *m == made) {
        if remembered.len() >= REMEMBERED {
            remembered.remove(0);
        }
        remembered.push((made, small.clone()));
    }
    Ok(small)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// Eight at once run two at a time, all of them, and each place is given back.
    #[test]
    fn at_most_two_run_at_once_and_every_one_runs() {
        let places = OneOffs::default();
        let (now, most, done) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    places
                        .run("t", || {
                            let n = now.fetch_add(1, SeqCst) + 1;
                            most.fetch_max(n, SeqCst);
                            std::thread::sleep(Duration::from_millis(30));
                            now.fetch_sub(1, SeqCst);
                            done.fetch_add(1, SeqCst);
                        })
                        .unwrap();
                });
            }
        });
        assert_eq!(done.load(SeqCst), 8);
        assert_eq!(most.load(SeqCst), AT_ONCE);
        assert_eq!(*places.busy.lock(), 0);
    }
}
