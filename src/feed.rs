//! What a source fills: the newest frame ([`FrameSlot`]), the source's state and its counters.
//!
//! A [`SourceFeed`] is the source side of a stream, and nothing else: the source thread
//! publishes into it and sets its state; viewers read its slot; `/status` reads its counters.
//! A served stream ([`crate::hub::Stream`]) owns one, which its viewers read, and, with
//! `--fallback`, a chain of further feeds, one per source, that no viewer sees: the failover
//! forwarder passes the frames of the first that is up into the served one. Before this type
//! those members were hidden `Stream`s named `door#1`, carrying viewer fields they never used.
//!
//! Waiting for a frame of *one* feed is the slot's job ([`FrameSlot::wait_newer`]). Waiting
//! for a frame of *several* (a `/mux` viewer, a failover forwarder) is a [`Subscription`]:
//! the waiter owns a doorbell and registers it with exactly the feeds it carries, and each
//! publish rings the doorbells registered with that feed, and no others. (A process-wide
//! doorbell rang for every frame of every camera woke each `/mux` viewer for cameras it does
//! not carry.)

use crate::frame::Frame;
use crate::slot::FrameSlot;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a source is in its life. Shown in `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Waiting for the upstream to connect (or to be reached).
    Connecting,
    /// Frames are arriving.
    Live,
    /// The upstream went away; waiting for it to come back.
    Lost,
    /// Every attempt since the source (re)started has failed: it never delivered a frame
    /// this time (`last_error` says why); the relay keeps trying. Not `lost`: nothing was.
    Failing,
    /// The input ended for good (stdin closed).
    Ended,
    /// A `--fallback` source that is not needed now (a source before it is up): it stays
    /// disconnected, or for `testsrc` and `file:`, makes no frames.
    Standby,
    /// `--on-demand`: nobody watches, so the source is not pulled (no connection, no command
    /// running, no frames made) until someone does.
    Idle,
}

impl SourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Connecting => "connecting",
            SourceState::Live => "live",
            SourceState::Lost => "lost",
            SourceState::Failing => "failing",
            SourceState::Ended => "ended",
            SourceState::Standby => "standby",
            SourceState::Idle => "idle",
        }
    }
}

/// Why a source failed: `connection refused`, `HTTP 404`, `command exited with status 1`.
///
/// `said` is what the source's own program said as it ended (an `exec:` command's last stderr
/// line). A camera command prints its input URL, and a password in a URL's path
/// (`…/user=admin_password=…`) is beyond any redaction, which is why `/status` hides the
/// command itself without a login; its words follow the same rule ([`SourceError::shown`]).
/// The log keeps them: it is the operator's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub reason: String,
    pub said: Option<String>,
}

impl SourceError {
    /// The error as a page shows it: whole where the operator is asking (`--status-details`
    /// or a login), else without the command's words.
    pub fn shown(&self, details: bool) -> String {
        match (&self.said, details) {
            (Some(_), false) => format!(
                "{} (its last words are shown with --status-details or a login)",
                self.reason
            ),
            _ => self.to_string(),
        }
    }

    /// The error an I/O error carries: a [`SourceError`] the source made (an `exec:`
    /// command's end, with its words), or the error's text.
    pub fn from_io(e: &std::io::Error) -> SourceError {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<SourceError>())
            .cloned()
            .unwrap_or_else(|| e.to_string().into())
    }
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.said {
            Some(words) => write!(f, "{} (its last words: {words})", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for SourceError {}

impl From<String> for SourceError {
    fn from(reason: String) -> SourceError {
        SourceError { reason, said: None }
    }
}

/// Counters of a source. Atomics, because the source thread bumps them per frame and
/// `/status` reads them from other threads.
#[derive(Debug)]
pub struct SourceStats {
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub not_jpeg: AtomicU64,
    pub oversized: AtomicU64,
    pub header_too_long: AtomicU64,
    pub garbage_bytes: AtomicU64,
    /// Frames cut off by the upstream disconnecting (or being dropped) mid-frame.
    pub truncated: AtomicU64,
    /// Times the upstream changed its multipart boundary mid-stream.
    pub boundary_changes: AtomicU64,
    /// NO SIGNAL pictures received from an upstream relay (its camera was down); not
    /// published, see [`crate::source::pump::Pump::feed`].
    pub no_signal_parts: AtomicU64,
    /// Upstream connections accepted or made, including the first.
    pub connections: AtomicU64,
    /// Frames discarded at the start of a connection (`--warmup`: a camera's exposure
    /// settling).
    pub warmup_discarded: AtomicU64,
    info: Mutex<SourceInfo>,
}

#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub state: SourceState,
    /// The upstream's address, when there is one.
    pub peer: Option<String>,
    /// Detected format, e.g. `multipart boundary=spionisto`: the last one seen, kept while
    /// the source is down.
    pub format: Option<String>,
    pub since: Instant,
    /// Why the source last failed (`connection refused`, `HTTP 404`, `exited with status
    /// 127`), and when; kept after it recovers, so `/status` says what the last outage was.
    pub last_error: Option<(SourceError, Instant)>,
}

/// Input rate over the last completed window of about a second.
#[derive(Debug)]
struct Rate {
    window_start: Instant,
    frames_at_start: u64,
    bytes_at_start: u64,
    fps: f64,
    bits_per_sec: f64,
}

/// A source spec as shown: `full` (as given, passwords redacted) to the operator, `public`
/// (the kind and, for a URL, its host; no command, path or query, which may hold a secret the
/// redaction cannot recognise) to anyone else. Made where the spec is parsed
/// ([`crate::source::SourceSpec::shown`]), so nothing works the kind out again from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub full: String,
    pub public: String,
}

impl Spec {
    /// As a caller sees it: `full` with `details` (a login, `--status-details`).
    pub fn shown(&self, details: bool) -> &str {
        if details {
            &self.full
        } else {
            &self.public
        }
    }
}

impl From<&str> for Spec {
    /// A spec with nothing to hide (`testsrc`; tests).
    fn from(spec: &str) -> Spec {
        Spec {
            full: spec.to_string(),
            public: spec.to_string(),
        }
    }
}

/// The source side of a stream. Share it as `Arc<SourceFeed>`.
#[derive(Debug)]
pub struct SourceFeed {
    /// For log lines: the stream's name, or `NAME#1`… for the members of a fallback chain.
    pub name: String,
    /// The source spec (`--source`, `--fallback`), as `/status` shows it.
    pub spec: Spec,
    pub slot: FrameSlot<Frame>,
    pub stats: SourceStats,
    rate: Mutex<Rate>,
    /// The newest frame from the source (not a generated one). Its lock also orders real
    /// frames against generated ones, so a no-signal picture never covers a newer real frame.
    last_real: Mutex<Option<Arc<Frame>>>,
    pub created: Instant,
    /// Times the source was started because someone came (`--on-demand`, for `/metrics`).
    pub starts: AtomicU64,
    /// `--warmup N`: the first N frames of every connection or start of the source are
    /// discarded before anyone sees them (a camera's exposure settling). Set at start-up.
    pub warmup: std::sync::atomic::AtomicU32,
    /// The last seconds of a served stream ([`crate::history`]); set once at start-up for the
    /// streams viewers read, never for a fallback member or a smaller size.
    pub history: std::sync::OnceLock<crate::history::History>,
    /// The upstream connects to us (`tcp-listen:`, `stdin`): when it is gone the relay waits
    /// for it; there is nothing to reconnect to. Set once by the source as it starts.
    pub push: AtomicBool,
    /// The source was started for someone and has not delivered its first frame yet: the
    /// NO SIGNAL watchdog shows a STARTING picture at once meanwhile.
    pub starting: AtomicBool,
    /// The doorbells of the [`Subscription`]s to this feed: one entry per live subscription
    /// (a `/mux` viewer, a failover forwarder), each removed by its subscription's drop, so
    /// bounded by `--max-clients` plus the number of chains.
    subscribers: Mutex<Vec<Arc<Doorbell>>>,
}

impl SourceFeed {
    pub fn new(name: &str, spec: impl Into<Spec>) -> Arc<SourceFeed> {
        let now = Instant::now();
        Arc::new(SourceFeed {
            name: name.to_string(),
            spec: spec.into(),
            slot: FrameSlot::new(),
            stats: SourceStats {
                frames_in: AtomicU64::new(0),
                bytes_in: AtomicU64::new(0),
                not_jpeg: AtomicU64::new(0),
                oversized: AtomicU64::new(0),
                header_too_long: AtomicU64::new(0),
                garbage_bytes: AtomicU64::new(0),
                truncated: AtomicU64::new(0),
                boundary_changes: AtomicU64::new(0),
                no_signal_parts: AtomicU64::new(0),
                connections: AtomicU64::new(0),
                warmup_discarded: AtomicU64::new(0),
                info: Mutex::new(SourceInfo {
                    state: SourceState::Connecting,
                    peer: None,
                    format: None,
                    since: now,
                    last_error: None,
                }),
            },
            rate: Mutex::new(Rate {
                window_start: now,
                frames_at_start: 0,
                bytes_at_start: 0,
                fps: 0.0,
                bits_per_sec: 0.0,
            }),
            last_real: Mutex::new(None),
            created: now,
            starts: AtomicU64::new(0),
            starting: AtomicBool::new(false),
            push: AtomicBool::new(false),
            history: std::sync::OnceLock::new(),
            warmup: std::sync::atomic::AtomicU32::new(0),
            subscribers: Mutex::new(Vec::new()),
        })
    }

    /// Makes `jpeg` the newest frame. Called by source threads only.
    pub fn publish(&self, jpeg: &[u8]) -> Arc<Frame> {
        self.publish_frame(Arc::new(Frame::new(jpeg)))
    }

    /// Makes `frame` (already laid out, e.g. by a member of a fallback chain) the newest
    /// frame, without a copy. Counted as input like [`publish`](Self::publish).
    pub fn publish_frame(&self, frame: Arc<Frame>) -> Arc<Frame> {
        if self.starting.load(Relaxed) {
            self.starting.store(false, Relaxed);
        }
        let mut last_real = self.last_real.lock();
        let frames = self.stats.frames_in.fetch_add(1, Relaxed) + 1;
        self.slot.publish(frame.clone());
        *last_real = Some(frame.clone());
        drop(last_real);
        self.ring();
        if let Some(history) = self.history.get() {
            history.push(frame.clone());
        }
        let bytes = self.stats.bytes_in.load(Relaxed);
        let mut rate = self.rate.lock();
        let elapsed = frame.arrived_at.duration_since(rate.window_start);
        if elapsed >= Duration::from_secs(1) {
            let secs = elapsed.as_secs_f64();
            rate.fps = (frames - rate.frames_at_start) as f64 / secs;
            rate.bits_per_sec = (bytes - rate.bytes_at_start) as f64 * 8.0 / secs;
            rate.window_start = frame.arrived_at;
            rate.frames_at_start = frames;
            rate.bytes_at_start = bytes;
        }
        drop(rate);
        frame
    }

    /// Publishes a generated picture (see [`crate::nosignal`]) unless a real frame arrived
    /// since `frames_in` was `frames_before`. Not counted as input.
    pub fn publish_generated(&self, jpeg: &[u8], frames_before: u64) -> bool {
        let last_real = self.last_real.lock();
        if self.stats.frames_in.load(Relaxed) != frames_before {
            return false;
        }
        let frame = Arc::new(Frame::no_signal(jpeg));
        self.slot.publish(frame);
        drop(last_real);
        self.ring();
        true
    }

    /// Publishes a frame made from another feed's (a smaller size, [`crate::tiers`]): counted
    /// as input like a source's, except a NO SIGNAL picture, which is passed on as generated.
    pub fn publish_derived(&self, frame: Arc<Frame>) {
        if frame.no_signal {
            let _guard = self.last_real.lock();
            self.slot.publish(frame);
            drop(_guard);
            self.ring();
        } else {
            if self.stats.frames_in.load(Relaxed) == 0 {
                self.set_live();
            }
            self.stats
                .bytes_in
                .fetch_add(frame.jpeg().len() as u64, Relaxed);
            self.publish_frame(frame);
        }
    }

    /// Rings the doorbell of every subscription to this feed: an atomic add per subscriber
    /// that carries this feed, and a lock and a notify only for one that is asleep
    /// ([`Doorbell`]); nothing for anyone else.
    fn ring(&self) {
        for bell in self.subscribers.lock().iter() {
            bell.ring(false);
        }
    }

    /// Wakes every waiter for good, on the slot and through subscriptions (the HTTP side
    /// calls it when it stops).
    pub fn close(&self) {
        self.slot.close();
        for bell in self.subscribers.lock().iter() {
            bell.ring(true);
        }
    }

    /// Whether viewers are being sent the NO SIGNAL picture now (the newest frame is one).
    pub fn shows_no_signal(&self) -> bool {
        self.slot.latest().is_some_and(|(f, _)| f.no_signal)
    }

    /// Width and height of the newest real frame, if it says.
    pub fn last_dimensions(&self) -> Option<(u16, u16)> {
        let frame = self.last_real.lock().clone()?;
        crate::jpeg::dimensions(frame.jpeg())
    }

    /// `since` (how long the source has been in this state) moves only when the state does.
    pub fn set_state(&self, state: SourceState, peer: Option<String>) {
        let mut info = self.stats.info.lock();
        if info.state != state {
            info.state = state;
            info.since = Instant::now();
        }
        info.peer = peer;
    }

    /// A connection attempt reached the upstream: record where. The state stays (a source
    /// that is down is not live again until a frame arrives, see [`SourceFeed::set_live`]).
    pub fn set_peer(&self, peer: String) {
        self.stats.info.lock().peer = Some(peer);
    }

    /// Frames are flowing again: `live`, keeping the peer the source set when it connected.
    pub fn set_live(&self) {
        let mut info = self.stats.info.lock();
        if info.state != SourceState::Live {
            info.state = SourceState::Live;
            info.since = Instant::now();
        }
    }

    /// Whether the upstream connects to us ([`SourceFeed::push`]): what a page tells a viewer
    /// the relay is doing while it has no picture.
    pub fn waits_for_sender(&self) -> bool {
        self.push.load(Relaxed)
    }

    /// Copies another feed's last error, with its time (a failover member's).
    pub fn set_last_error(&self, error: Option<(SourceError, Instant)>) {
        if error.is_some() {
            self.stats.info.lock().last_error = error;
        }
    }

    /// Records why the source failed, for `/status` and the viewer page.
    pub fn set_error(&self, error: impl Into<SourceError>) {
        self.stats.info.lock().last_error = Some((error.into(), Instant::now()));
    }

    pub fn set_format(&self, format: String) {
        self.stats.info.lock().format = Some(format);
    }

    pub fn source_info(&self) -> SourceInfo {
        self.stats.info.lock().clone()
    }

    /// Input frames per second and bits per second, over the last window of about a second.
    /// Zero once frames stop arriving for more than two seconds.
    pub fn input_rate(&self) -> (f64, f64) {
        let age = self.last_frame_age();
        if age.is_none_or(|a| a > Duration::from_secs(2)) {
            return (0.0, 0.0);
        }
        let rate = self.rate.lock();
        (rate.fps, rate.bits_per_sec)
    }

    /// Time since the newest frame arrived.
    pub fn last_frame_age(&self) -> Option<Duration> {
        self.last_real
            .lock()
            .as_ref()
            .map(|f| f.arrived_at.elapsed())
    }
}

/// One waiter's doorbell: how often it was rung, and whether a feed it carries closed.
/// Exactly one thread waits on it (its [`Subscription`]'s owner). A ring is an atomic add,
/// plus a lock and a notify only while that thread sleeps: a `/mux` viewer busy writing is
/// not disturbed by each frame of each camera it carries (the two `sleeping` / `rung`
/// accesses are sequentially consistent, so a ring either sees the sleeper or the sleeper
/// sees the ring before it sleeps).
#[derive(Debug, Default)]
pub struct Doorbell {
    rung: AtomicU64,
    closed: AtomicBool,
    sleeping: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Doorbell {
    fn ring(&self, close: bool) {
        if close {
            self.closed.store(true, SeqCst);
        }
        self.rung.fetch_add(1, SeqCst);
        if self.sleeping.load(SeqCst) {
            let _guard = self.lock.lock();
            self.cond.notify_one();
        }
    }
}

/// How a [`Subscription::wait`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Rung {
    /// A feed published since the last wait (or since subscribing).
    Frame,
    Timeout,
    /// A feed was closed: the server is stopping.
    Closed,
}

/// A waiter's registration with the feeds it carries: woken by their publishes only.
/// Owned by the waiting thread; dropping it removes its doorbell from every feed.
#[derive(Debug)]
pub struct Subscription {
    bell: Arc<Doorbell>,
    feeds: Vec<Arc<SourceFeed>>,
    /// The ring count at the last wait's return. Taken before the caller looks at the slots,
    /// so a publish during that look makes the next wait return at once: none is lost.
    seen: u64,
}

impl Subscription {
    pub fn new(feeds: impl IntoIterator<Item = Arc<SourceFeed>>) -> Subscription {
        let bell = Arc::new(Doorbell::default());
        let feeds: Vec<Arc<SourceFeed>> = feeds.into_iter().collect();
        for f in &feeds {
            f.subscribers.lock().push(bell.clone());
            if f.slot.is_closed() {
                bell.ring(true);
            }
        }
        let seen = bell.rung.load(SeqCst);
        Subscription { bell, feeds, seen }
    }

    /// Waits until a carried feed publishes (unless one already did since the last call), a
    /// feed closes, or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration) -> Rung {
        let bell = &self.bell;
        let quiet = |seen| bell.rung.load(SeqCst) == seen && !bell.closed.load(SeqCst);
        if quiet(self.seen) {
            let deadline = Instant::now() + timeout;
            let mut guard = bell.lock.lock();
            bell.sleeping.store(true, SeqCst);
            while quiet(self.seen) {
                if bell.cond.wait_until(&mut guard, deadline).timed_out() {
                    break;
                }
            }
            bell.sleeping.store(false, SeqCst);
        }
        if bell.closed.load(SeqCst) {
            return Rung::Closed;
        }
        let now = bell.rung.load(SeqCst);
        let rung = now != self.seen;
        self.seen = now;
        if rung {
            Rung::Frame
        } else {
            Rung::Timeout
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for f in &self.feeds {
            f.subscribers.lock().retain(|b| !Arc::ptr_eq(b, &self.bell));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testjpeg::jpeg_with_seq;

    #[test]
    fn a_subscription_wakes_only_for_the_feeds_it_carries() {
        let (a, b) = (
            SourceFeed::new("a", "testsrc"),
            SourceFeed::new("b", "testsrc"),
        );
        let mut sub = Subscription::new([a.clone()]);
        let quiet = Duration::from_millis(20);
        assert_eq!(sub.wait(quiet), Rung::Timeout);
        b.publish(&jpeg_with_seq(1, 100));
        assert_eq!(sub.wait(quiet), Rung::Timeout, "b is not carried");
        a.publish(&jpeg_with_seq(2, 100));
        assert_eq!(sub.wait(quiet), Rung::Frame);
        assert_eq!(sub.wait(quiet), Rung::Timeout, "one ring, one wake-up");
        drop(sub);
        assert!(a.subscribers.lock().is_empty(), "dropping unsubscribes");
    }

    #[test]
    fn no_wake_up_is_lost_and_close_ends_the_wait() {
        let feeds: Vec<_> = (0..3)
            .map(|i| SourceFeed::new(&i.to_string(), "x"))
            .collect();
        let publisher = {
            let feeds = feeds.clone();
            std::thread::spawn(move || {
                for n in 1..=300u64 {
                    feeds[n as usize % 3].publish(&jpeg_with_seq(n, 64));
                }
            })
        };
        // Each round: look at every slot, then wait. Whatever the interleaving, the last
        // frame of every feed is seen without any wait running into its timeout.
        let mut sub = Subscription::new(feeds.iter().cloned());
        let mut newest = [0u64; 3];
        while newest.iter().sum::<u64>() < 300 {
            for (f, n) in feeds.iter().zip(newest.iter_mut()) {
                *n = f.slot.latest().map_or(0, |(_, g)| g);
            }
            if newest.iter().sum::<u64>() < 300 {
                assert_ne!(
                    sub.wait(Duration::from_secs(5)),
                    Rung::Timeout,
                    "lost wake-up"
                );
            }
        }
        publisher.join().unwrap();
        feeds[1].close();
        assert_eq!(sub.wait(Duration::from_secs(5)), Rung::Closed);
    }
}
