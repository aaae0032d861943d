//! One served stream: its frame slot, what its source is doing, and who is watching.
//!
//! This is the only state shared between the source side and the HTTP side. Sources call
//! [`Stream::publish`]; client threads wait on [`Stream::slot`] and register themselves in
//! [`Stream::clients`] so `/status` can list them.

use crate::frame::Frame;
use crate::slot::FrameSlot;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
            SourceState::Ended => "ended",
            SourceState::Standby => "standby",
            SourceState::Idle => "idle",
        }
    }
}

/// Counters and state of a stream's source. Atomics, because the source thread bumps them per
/// frame and `/status` reads them from other threads.
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
    /// published, see [`crate::source::Pump::feed`].
    pub no_signal_parts: AtomicU64,
    /// Upstream connections accepted or made, including the first.
    pub connections: AtomicU64,
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
    pub last_error: Option<(String, Instant)>,
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

/// A served stream. Share it as `Arc<Stream>`.
#[derive(Debug)]
pub struct Stream {
    /// `default` for the single `--source` form.
    pub name: String,
    /// The source spec as given on the command line.
    pub spec: String,
    pub slot: FrameSlot<Frame>,
    pub source: SourceStats,
    pub clients: ClientRegistry,
    /// Totals over all clients, past and present, for `/metrics`.
    pub out: OutStats,
    rate: Mutex<Rate>,
    /// The newest frame from the source (not a generated one). Its lock also orders real
    /// frames against generated ones, so a no-signal picture never covers a newer real frame.
    last_real: Mutex<Option<Arc<Frame>>>,
    pub created: Instant,
    /// With `--fallback`: the sources that can feed this stream, in order of preference, each
    /// a hub of its own that no client sees ([`crate::failover`] forwards the frames of the
    /// first that is up). Set once at start-up.
    pub feeders: std::sync::OnceLock<Feeders>,
    /// A gap in frames that is expected (a failover switch takes up to `--source-timeout`
    /// plus a connect): the NO SIGNAL picture waits at least this long.
    pub expected_gap: Mutex<Duration>,
    /// Who wants this stream's frames now, for `--on-demand`.
    pub demand: Demand,
}

/// Who wants a stream's frames: its viewers (`/stream`, `/mux`, every one registered in
/// [`Stream::clients`]) and the `/snapshot` requests waiting for a frame. With `--on-demand`
/// its source runs only while someone does, and LINGER after the last one left.
#[derive(Debug, Default)]
pub struct Demand {
    /// `--on-demand`'s LINGER for this stream; unset: the source always runs.
    pub linger: std::sync::OnceLock<Duration>,
    /// `/snapshot` requests waiting for a frame now (a [`SnapshotWait`] each).
    pending_snapshots: std::sync::atomic::AtomicUsize,
    /// When someone last wanted the frames (checked by the source's own loop).
    last_wanted: Mutex<Option<Instant>>,
    /// Times the source was started because someone came (for `/metrics`).
    pub starts: AtomicU64,
    /// The source was started for someone and has not delivered its first frame yet: the
    /// NO SIGNAL watchdog shows a STARTING picture at once meanwhile.
    pub starting: std::sync::atomic::AtomicBool,
}

/// Counts a waiting `/snapshot` as demand while it lives.
#[derive(Debug)]
pub struct SnapshotWait<'a>(&'a Demand);

impl Drop for SnapshotWait<'_> {
    fn drop(&mut self) {
        self.0.pending_snapshots.fetch_sub(1, Relaxed);
    }
}

impl Demand {
    pub fn on_demand(&self) -> bool {
        self.linger.get().is_some()
    }

    pub fn snapshot_waits(&self) -> SnapshotWait<'_> {
        self.pending_snapshots.fetch_add(1, Relaxed);
        SnapshotWait(self)
    }
}

impl Stream {
    /// With `--on-demand`: true while nobody has wanted the frames for LINGER (or ever), so
    /// the source may stop. Always false without it.
    pub fn idle(&self) -> bool {
        let Some(linger) = self.demand.linger.get() else {
            return false;
        };
        let watched = !self.clients.is_empty() || self.demand.pending_snapshots.load(Relaxed) > 0;
        let mut last = self.demand.last_wanted.lock();
        if watched {
            *last = Some(Instant::now());
            return false;
        }
        last.is_none_or(|t| t.elapsed() >= *linger)
    }
}

/// The sources of a stream with fallbacks, and which one feeds it now.
#[derive(Debug)]
pub struct Feeders {
    /// Primary first, then each `--fallback`.
    pub members: Vec<Arc<Stream>>,
    /// The member whose frames are forwarded now, if any.
    pub current: Feeding,
    /// Changes of the feeding member since start (for `/metrics`).
    pub switches: AtomicU64,
    /// Why the last switch happened.
    pub reason: Mutex<String>,
}

/// Which member of a chain feeds its stream: an index, or none while no member is up. One
/// word, written by the failover thread, read by `/status` and `/metrics`.
#[derive(Debug)]
pub struct Feeding(std::sync::atomic::AtomicUsize);

impl Default for Feeding {
    fn default() -> Feeding {
        Feeding(std::sync::atomic::AtomicUsize::new(usize::MAX))
    }
}

impl Feeding {
    pub fn load(&self) -> Option<usize> {
        Some(self.0.load(Relaxed)).filter(|&i| i != usize::MAX)
    }

    pub fn store(&self, member: Option<usize>) {
        self.0.store(member.unwrap_or(usize::MAX), Relaxed);
    }
}

impl Stream {
    pub fn new(name: &str, spec: &str) -> Arc<Stream> {
        let now = Instant::now();
        Arc::new(Stream {
            name: name.to_string(),
            spec: spec.to_string(),
            slot: FrameSlot::new(),
            source: SourceStats {
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
                info: Mutex::new(SourceInfo {
                    state: SourceState::Connecting,
                    peer: None,
                    format: None,
                    since: now,
                    last_error: None,
                }),
            },
            clients: ClientRegistry::default(),
            out: Default::default(),
            rate: Mutex::new(Rate {
                window_start: now,
                frames_at_start: 0,
                bytes_at_start: 0,
                fps: 0.0,
                bits_per_sec: 0.0,
            }),
            last_real: Mutex::new(None),
            created: now,
            feeders: std::sync::OnceLock::new(),
            expected_gap: Mutex::new(Duration::ZERO),
            demand: Demand::default(),
        })
    }

    /// Makes `jpeg` the newest frame. Called by source threads only.
    pub fn publish(&self, jpeg: &[u8]) -> Arc<Frame> {
        self.publish_frame(Arc::new(Frame::new(jpeg)))
    }

    /// Makes `frame` (already laid out, e.g. by a feeder's hub) the newest frame, without a
    /// copy. Counted as input like [`publish`](Self::publish).
    pub fn publish_frame(&self, frame: Arc<Frame>) -> Arc<Frame> {
        if self.demand.starting.load(Relaxed) {
            self.demand.starting.store(false, Relaxed);
        }
        let mut last_real = self.last_real.lock();
        let frames = self.source.frames_in.fetch_add(1, Relaxed) + 1;
        self.slot.publish(frame.clone());
        *last_real = Some(frame.clone());
        drop(last_real);
        ANY_FRAME.bump();
        let bytes = self.source.bytes_in.load(Relaxed);
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
        if self.source.frames_in.load(Relaxed) != frames_before {
            return false;
        }
        let frame = Arc::new(Frame::no_signal(jpeg));
        self.slot.publish(frame);
        drop(last_real);
        ANY_FRAME.bump();
        true
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
        let mut info = self.source.info.lock();
        if info.state != state {
            info.state = state;
            info.since = Instant::now();
        }
        info.peer = peer;
    }

    /// A connection attempt reached the upstream: record where. The state stays (a source
    /// that is down is not live again until a frame arrives, see [`Stream::set_live`]).
    pub fn set_peer(&self, peer: String) {
        self.source.info.lock().peer = Some(peer);
    }

    /// Frames are flowing again: `live`, keeping the peer the source set when it connected.
    pub fn set_live(&self) {
        let mut info = self.source.info.lock();
        if info.state != SourceState::Live {
            info.state = SourceState::Live;
            info.since = Instant::now();
        }
    }

    /// Copies another hub's last error, with its time (a failover feeder's).
    pub fn set_last_error(&self, error: Option<(String, Instant)>) {
        if error.is_some() {
            self.source.info.lock().last_error = error;
        }
    }

    /// Records why the source failed, for `/status` and the viewer page.
    pub fn set_error(&self, error: String) {
        self.source.info.lock().last_error = Some((error, Instant::now()));
    }

    pub fn set_format(&self, format: String) {
        self.source.info.lock().format = Some(format);
    }

    pub fn source_info(&self) -> SourceInfo {
        self.source.info.lock().clone()
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

/// Upper bounds of the delay histogram's buckets, in seconds.
pub const DELAY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// What a stream's clients were sent, in total, including clients that have left (for
/// `/metrics`, rendered by [`crate::metrics`]). The relay-internal delay, from a frame's
/// arrival to the end of its write to a client, goes into a fixed-bucket histogram of atomics:
/// no lock, no allocation, whatever the number of clients.
#[derive(Debug, Default)]
pub struct OutStats {
    pub frames_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_skipped: AtomicU64,
    pub repeats: AtomicU64,
    /// Clients served since start.
    pub clients_total: AtomicU64,
    /// Cumulative counts per bucket of [`DELAY_BUCKETS`], plus +Inf last.
    pub delay_buckets: [AtomicU64; DELAY_BUCKETS.len() + 1],
    pub delay_sum_us: AtomicU64,
}

impl OutStats {
    /// Records one frame written: arrival to write complete.
    pub fn observe_delay(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DELAY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DELAY_BUCKETS.len());
        self.delay_buckets[i].fetch_add(1, Relaxed);
        self.delay_sum_us
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }
}

/// Wakes whoever waits for a new frame of *any* stream: the `/mux` writer, which carries
/// several streams on one connection and so cannot sleep on one slot. One per process, bumped
/// by every publish (a lock and a notify per frame, not per client).
#[derive(Debug)]
pub struct AnyFrame {
    /// Frames published so far, and whether the server is stopping.
    state: Mutex<(u64, bool)>,
    cond: parking_lot::Condvar,
}

pub static ANY_FRAME: AnyFrame = AnyFrame {
    state: parking_lot::const_mutex((0, false)),
    cond: parking_lot::Condvar::new(),
};

impl AnyFrame {
    fn bump(&self) {
        self.state.lock().0 += 1;
        self.cond.notify_all();
    }

    /// Frames published so far (by all streams).
    pub fn epoch(&self) -> u64 {
        self.state.lock().0
    }

    /// Waits until the epoch passes `seen` or `timeout` ends; the epoch then, or `None` once
    /// the server is stopping.
    pub fn wait(&self, seen: u64, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while st.0 <= seen && !st.1 {
            if self.cond.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        (!st.1).then_some(st.0)
    }

    /// Wakes every waiter for good (the HTTP side calls it when it stops).
    pub fn close(&self) {
        self.state.lock().1 = true;
        self.cond.notify_all();
    }
}

/// Per-client counters, written by the client's own thread, read by `/status`.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub user_agent: String,
    /// `framed` or `advance`: see the HTTP module.
    pub layout: &'static str,
    /// The client's `?fps=` cap, if it asked for one.
    pub fps_cap: Option<f64>,
    pub connected_at: Instant,
    pub frames_sent: AtomicU64,
    pub frames_skipped: AtomicU64,
    /// Re-sends of an unchanged frame to keep a still picture painted.
    pub repeats: AtomicU64,
    pub bytes_sent: AtomicU64,
}

/// The clients of one stream. Entries are removed by a guard when the client thread ends,
/// so the map holds at most one entry per live client thread (bounded by `--max-clients`).
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
}

/// Removes its client from the registry when dropped.
#[derive(Debug)]
pub struct Registration<'a> {
    registry: &'a ClientRegistry,
    pub info: Arc<ClientInfo>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.map.lock().remove(&self.info.id);
    }
}

impl ClientRegistry {
    pub fn register(
        &self,
        addr: String,
        user_agent: String,
        layout: &'static str,
        fps_cap: Option<f64>,
    ) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            addr,
            user_agent,
            layout,
            fps_cap,
            connected_at: Instant::now(),
            frames_sent: AtomicU64::new(0),
            frames_skipped: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        });
        self.map.lock().insert(id, info.clone());
        Registration {
            registry: self,
            info,
        }
    }

    pub fn snapshot(&self) -> Vec<Arc<ClientInfo>> {
        self.map.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
