//! Smaller sizes of a stream, made once for all their viewers: one transcoder per (stream,
//! size, quality), running only while someone holds a [`Lease`] on it.
//!
//! A tier is a [`SourceFeed`] of its own, so its viewers read it exactly as they read the
//! stream's (the same viewer loop, the same slot, the same in-flight bound), and a
//! `/mux` viewer subscribes to it like to any feed. Its transcoder thread waits on the
//! stream's slot like a viewer does and, like a viewer, takes only the newest frame when it is
//! behind: it holds at most the frame it works on, and the stream's full-size path never
//! waits for it. A frame that does not decode is skipped and counted, and the tier goes on.
//!
//! Lifetime: the first lease on a size starts its thread; when the last lease is dropped the
//! thread ends [`LINGER`] later (a viewer that reconnects, or `?size=auto` stepping between
//! sizes, does not restart it). The registry ([`Tiers`]) holds at most [`MAX_TIERS`] per
//! stream, each with one thread, and at most [`MAX_TIERS_PER_ADDR`] started by one address; a
//! request for one more size is refused, one for a size that runs never is.

use crate::feed::SourceFeed;
use crate::frame::Frame;
use crate::scale::{self, ShrinkError};
use crate::scaled_decode::Planes;
use crate::slot::Next;
use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes (with their qualities) one stream may have running at once.
pub const MAX_TIERS: usize = 6;
/// Of those, the sizes one address may have started: one client cannot take every size of a
/// camera (six connections with six qualities once meant six transcoders), and a viewer that
/// arrives for a size already running is never refused, whoever started it.
pub const MAX_TIERS_PER_ADDR: usize = 3;
/// How long a size nobody watches keeps its transcoder.
pub const LINGER: Duration = Duration::from_secs(1);

/// A size a stream is served at: halvings of the camera's picture (`level`: 0 is the camera's
/// own, 1 is 1/2, 2 is 1/4, 3 is 1/8) and the JPEG quality of the smaller pictures. The one
/// key of a size, for its transcoder, a sized snapshot and a viewer alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub level: u8,
    pub quality: u8,
}

impl Size {
    /// `full`, `1/2`, `1/4`, `1/8`.
    pub fn fraction(self) -> String {
        fraction(self.level)
    }
}

/// One smaller size of a stream.
#[derive(Debug)]
pub struct Tier {
    /// Which size (`level` at least 1).
    pub size: Size,
    /// What its viewers read.
    pub feed: Arc<SourceFeed>,
    /// Leases held now (viewers, snapshots waiting). Changed under the registry's lock when
    /// it goes up from a lookup, so the thread's "nobody, stop" cannot race a new viewer.
    users: AtomicUsize,
    /// Source frames made smaller, and those that failed (did not decode).
    pub frames: AtomicU64,
    pub failed: AtomicU64,
    /// Source frames passed over because a newer one was there when it was ready.
    pub skipped: AtomicU64,
    /// Source frames this size decoded itself; the others' decode served the rest of
    /// `frames` (see [`Tiers::decoded`]).
    pub decoded: AtomicU64,
    /// CPU time its thread has used, in nanoseconds.
    pub cpu_ns: AtomicU64,
    pub started: Instant,
    /// The address whose viewer started it, while it runs (none: a Unix socket's).
    by: Option<IpAddr>,
}

impl Tier {
    /// Viewers (and waiting snapshots) now.
    pub fn users(&self) -> usize {
        self.users.load(Relaxed)
    }

    /// `1/2`, `1/4`, `1/8`.
    pub fn fraction(&self) -> String {
        self.size.fraction()
    }
}

/// The size `level` halvings make: `full`, `1/2`, `1/4`, `1/8`.
pub fn fraction(level: u8) -> String {
    match level {
        0 => "full".into(),
        l => format!("1/{}", 1u32 << l),
    }
}

/// A viewer's hold on a tier: keeps its transcoder running while it lives.
#[derive(Debug)]
pub struct Lease(Arc<Tier>);

impl Lease {
    pub fn tier(&self) -> &Arc<Tier> {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.users.fetch_sub(1, Relaxed);
    }
}

/// The tiers of one stream running now. At most [`MAX_TIERS`]; each removes itself when its
/// thread ends.
#[derive(Debug, Default)]
pub struct Tiers {
    list: Mutex<Vec<Arc<Tier>>>,
    /// The camera's newest frame decoded, once for all the sizes running: at the smallest
    /// reduction any of them needs, which the others halve from (a few hundred microseconds
    /// against a decode's milliseconds). One picture per stream, dropped with the last size.
    /// Locked before `list` where both are.
    decoded: Mutex<Option<Decoded>>,
}

/// A camera frame as [`Tiers::decoded`] keeps it.
#[derive(Debug)]
struct Decoded {
    /// Which frame (the same `Arc` the stream's slot handed out).
    frame: Arc<Frame>,
    /// Its halvings.
    level: u8,
    /// The picture, or why it did not decode (so the next size does not try again).
    picture: Result<Arc<Planes>, ShrinkError>,
}

impl Tiers {
    /// The tiers running now (for `/status` and `/metrics`).
    pub fn snapshot(&self) -> Vec<Arc<Tier>> {
        self.list.lock().clone()
    }

    /// `tier` out of the list; with the last one goes the decoded picture.
    fn remove(&self, tier: &Arc<Tier>) {
        self.remove_from(self.list.lock(), tier);
    }

    /// [`Tiers::remove`] with the list already locked (the check that nobody holds a lease
    /// and the removal under one lock, so a new viewer cannot lease a size that is ending).
    fn remove_from(&self, mut list: parking_lot::MutexGuard<'_, Vec<Arc<Tier>>>, tier: &Arc<Tier>) {
        list.retain(|t| !Arc::ptr_eq(t, tier));
        let empty = list.is_empty();
        drop(list); // `decoded` is locked before `list`
        if empty {
            *self.decoded.lock() = None;
        }
    }

    /// `frame` at `tier`'s size, decoded: from the picture another size decoded already when
    /// it is this frame at that size or larger, or decoded now at the smallest reduction any
    /// running size needs (and kept for them).
    fn picture(
        &self,
        frame: &Arc<Frame>,
        tier: &Tier,
        max_pixels: usize,
    ) -> Result<Arc<Planes>, ShrinkError> {
        let want = tier.size.level;
        let mut last = self.decoded.lock();
        let ours = last
            .as_ref()
            .filter(|d| Arc::ptr_eq(&d.frame, frame) && d.level <= want);
        let (level, picture) = match ours {
            Some(d) => (d.level, d.picture.clone()),
            None => {
                let level = self.list.lock().iter().map(|t| t.size.level).min();
                let level = level.unwrap_or(want).min(want);
                let picture = scale::decode(frame.jpeg(), level, max_pixels).map(Arc::new);
                tier.decoded.fetch_add(1, Relaxed);
                *last = Some(Decoded {
                    frame: frame.clone(),
                    level,
                    picture: picture.clone(),
                });
                (level, picture)
            }
        };
        drop(last);
        let mut picture = picture?;
        for _ in level..want {
            picture = Arc::new(picture.halve());
        }
        Ok(picture)
    }

    /// A lease on `source` at `size`, starting its transcoder if it is not
    /// running. `stream` names it in logs and thread names; `max_pixels` bounds what a frame
    /// may decode to; `by` is the viewer's address, which may have started at most
    /// [`MAX_TIERS_PER_ADDR`] of those running. A size that runs is never refused. `Err` says
    /// why not (too many sizes, from that address or in all, no thread).
    pub fn lease(
        self: &Arc<Self>,
        stream: &str,
        source: &Arc<SourceFeed>,
        size: Size,
        max_pixels: usize,
        by: Option<IpAddr>,
    ) -> Result<Lease, String> {
        let size = Size {
            level: size.level.clamp(1, scale::MAX_LEVEL),
            ..size
        };
        let (level, quality) = (size.level, size.quality);
        let mut list = self.list.lock();
        if let Some(t) = list.iter().find(|t| t.size == size) {
            t.users.fetch_add(1, Relaxed);
            return Ok(Lease(t.clone()));
        }
        if list.len() >= MAX_TIERS {
            return Err(format!(
                "stream '{stream}' has {MAX_TIERS} sizes running already; ask for one of \
                 those (see /status), or for the full size"
            ));
        }
        if by.is_some() && list.iter().filter(|t| t.by == by).count() >= MAX_TIERS_PER_ADDR {
            return Err(format!(
                "stream '{stream}' has {MAX_TIERS_PER_ADDR} sizes running that your address \
                 started; ask for one of those (see /status), or for the full size"
            ));
        }
        let tier = Arc::new(Tier {
            size,
            feed: SourceFeed::new(
                &format!("{stream}@1/{}", 1u32 << level),
                source.spec.clone(),
            ),
            users: AtomicUsize::new(1),
            frames: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            started: Instant::now(),
            by,
        });
        let (registry, t, src) = (self.clone(), tier.clone(), source.clone());
        let name = format!("tier-{stream}-{}", 1u32 << level);
        std::thread::Builder::new()
            .name(name)
            .stack_size(scale::CODEC_STACK)
            .spawn(move || scale::as_codec_thread(|| transcode(&registry, &t, &src, max_pixels)))
            .map_err(|e| format!("cannot start a transcoder for stream '{stream}': {e}"))?;
        log::info!(
            "stream '{stream}': started the {} size (quality {quality}) for its viewers",
            tier.fraction()
        );
        list.push(tier.clone());
        Ok(Lease(tier))
    }
}

/// The transcoder thread of `tier`: the newest frame of `source`, smaller, into the tier's
/// feed, until nobody has held a lease for [`LINGER`] or the server stops.
fn transcode(registry: &Tiers, tier: &Arc<Tier>, source: &SourceFeed, max_pixels: usize) {
    let mut seen = 0;
    let mut idle_since: Option<Instant> = None;
    let errors = crate::logger::Throttled::new();
    let cpu_start = thread_cpu_ns();
    let stream = tier.feed.name.clone();
    let why_stopped = loop {
        if tier.users() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= LINGER {
                let list = registry.list.lock();
                if tier.users() == 0 {
                    registry.remove_from(list, tier);
                    break "nobody watches it";
                }
            }
        } else {
            idle_since = None;
        }
        let frame = match source.slot.wait_newer(seen, Duration::from_millis(100)) {
            Next::Frame(frame, generation) => {
                if seen > 0 && generation > seen + 1 {
                    tier.skipped.fetch_add(generation - seen - 1, Relaxed);
                }
                seen = generation;
                frame
            }
            Next::Timeout => continue,
            Next::Closed => {
                registry.remove(tier);
                break "the server is stopping";
            }
        };
        if tier.users() == 0 {
            continue; // lingering: nobody to make it for
        }
        let made = registry
            .picture(&frame, tier, max_pixels)
            .and_then(|picture| scale::encode(&picture, tier.size.quality, frame.jpeg()));
        match made {
            Ok(small) => {
                tier.frames.fetch_add(1, Relaxed);
                tier.feed
                    .publish_derived(Arc::new(Frame::derived(&small, &frame)));
            }
            Err(e) => {
                tier.failed.fetch_add(1, Relaxed);
                note_failure(&errors, &stream, &e);
            }
        }
        tier.cpu_ns
            .store(thread_cpu_ns().saturating_sub(cpu_start), Relaxed);
    };
    tier.feed.close();
    // Its thread's decode buffers, back to the system now that nobody watches this size.
    scale::give_back_memory();
    log::info!(
        "stream '{stream}': stopped the size ({why_stopped}) after {} frames, {} skipped, {} \
         failed, {:.2} s of CPU",
        tier.frames.load(Relaxed),
        tier.skipped.load(Relaxed),
        tier.failed.load(Relaxed),
        tier.cpu_ns.load(Relaxed) as f64 / 1e9,
    );
}

fn note_failure(log: &crate::logger::Throttled, stream: &str, e: &ShrinkError) {
    log.note(|more| {
        log::warn!(
            "stream '{stream}': skipped a frame that could not be made smaller: {e}{}; the \
             size goes on with the next",
            crate::logger::more(more)
        )
    });
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Codec panics contained by [`scale::shrink`]'s `catch_unwind`: logged once, then summarised.
static CODEC_PANIC_LOG: crate::logger::Throttled = crate::logger::Throttled::new();

/// Installs a panic hook under which a panic in a codec thread (a transcoder, a sized
/// snapshot's or clip's: [`scale::as_codec_thread`]), which [`scale::shrink`] contains and
/// turns into a skipped frame, is one log line, summarised when it repeats, instead of Rust's
/// message on every frame a hostile upstream sends. Any other panic keeps the default report.
pub fn contain_codec_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("");
        if scale::is_codec_thread() {
            CODEC_PANIC_LOG.note(|more| {
                log::error!(
                    "{name}: the JPEG codec failed on a frame ({info}); the frame is skipped{}",
                    crate::logger::more(more)
                )
            });
        } else {
            default(info);
        }
    }));
}
