//! One served stream: the feed its viewers read, the chain of sources behind it, and who is
//! watching.
//!
//! This is the state shared between the source side and the HTTP side. Sources fill a
//! [`SourceFeed`] and see nothing else; viewer threads wait on [`Stream::feed`]'s slot and
//! register themselves in [`Stream::clients`] so `/status` can list them.

use crate::feed::SourceFeed;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A served stream. Share it as `Arc<Stream>`.
#[derive(Debug)]
pub struct Stream {
    /// `default` for the single `--source` form.
    pub name: String,
    /// What viewers read: filled by the stream's source, or, with `--fallback`, by the
    /// failover forwarder from the member of [`Stream::chain`] that is up.
    pub feed: Arc<SourceFeed>,
    pub clients: ClientRegistry,
    /// Totals over all clients, past and present, for `/metrics`.
    pub out: OutStats,
    /// With `--fallback`: the sources that can feed this stream, in order of preference,
    /// each filling a feed of its own that no viewer sees ([`crate::failover`] forwards the
    /// frames of the first that is up). Set once at start-up.
    pub chain: std::sync::OnceLock<Chain>,
    /// A gap in frames that is expected (a failover switch takes up to `--source-timeout`
    /// plus a connect): the NO SIGNAL picture waits at least this long.
    pub expected_gap: Mutex<Duration>,
    /// Who wants this stream's frames now, for `--on-demand`.
    pub demand: Demand,
    /// Its smaller sizes running now (`?width=`, `?size=auto`), each with its transcoder.
    pub tiers: Arc<crate::tiers::Tiers>,
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

/// A stream's chain (`--fallback`): its members, the primary source and then each fallback,
/// and which member feeds the stream now. One word for each: the chain, a member of it, a
/// fallback (a member after the primary); `/status` (`failover.chain`) and `/metrics`
/// (`member="N"`) say the same.
#[derive(Debug)]
pub struct Chain {
    /// Primary first, then each `--fallback`.
    pub members: Vec<Arc<SourceFeed>>,
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
    /// A stream named `name` whose source is `spec` (as `/status` shows it).
    pub fn new(name: &str, spec: impl Into<crate::feed::Spec>) -> Arc<Stream> {
        Arc::new(Stream {
            name: name.to_string(),
            feed: SourceFeed::new(name, spec),
            clients: ClientRegistry::default(),
            out: Default::default(),
            chain: std::sync::OnceLock::new(),
            expected_gap: Mutex::new(Duration::ZERO),
            demand: Demand::default(),
            tiers: Default::default(),
        })
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

/// How a client reads a stream: one camera in one of the two part layouts (see the HTTP
/// module's `Layout`), or several cameras on one `/mux` connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Advance,
    Framed,
    Mux,
}

impl ClientKind {
    /// As `/status` shows it (`layout`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Advance => "advance",
            ClientKind::Framed => "framed",
            ClientKind::Mux => "mux",
        }
    }
}

/// Per-client counters, written by the client's own thread, read by `/status`.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub user_agent: String,
    pub kind: ClientKind,
    /// The client's `?fps=` cap, if it asked for one.
    pub fps_cap: Option<f64>,
    pub connected_at: Instant,
    pub frames_sent: AtomicU64,
    pub frames_skipped: AtomicU64,
    /// Re-sends of an unchanged frame to keep a still picture painted.
    pub repeats: AtomicU64,
    /// The size it is sent: halvings of the source size (0: the source's own frames).
    pub level: std::sync::atomic::AtomicU8,
    /// `?size=auto`: the size follows its link.
    pub auto: std::sync::atomic::AtomicBool,
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
        kind: ClientKind,
        fps_cap: Option<f64>,
    ) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            addr,
            user_agent,
            kind,
            fps_cap,
            connected_at: Instant::now(),
            frames_sent: AtomicU64::new(0),
            frames_skipped: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
            level: Default::default(),
            auto: Default::default(),
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

/// The streams served now, as one list: `SIGHUP` with `--config` replaces it whole (a new
/// stream added, a removed one gone), and each reader takes the list as it is at that moment.
/// Owned by `main`; the HTTP side and the NO SIGNAL watchdog read it.
#[derive(Debug, Default)]
pub struct Streams {
    now: parking_lot::RwLock<Arc<Vec<Arc<Stream>>>>,
}

impl Streams {
    pub fn new(streams: Vec<Arc<Stream>>) -> Arc<Streams> {
        Arc::new(Streams {
            now: parking_lot::RwLock::new(Arc::new(streams)),
        })
    }

    /// The list now (cheap: one reference count).
    pub fn get(&self) -> Arc<Vec<Arc<Stream>>> {
        self.now.read().clone()
    }

    pub fn set(&self, streams: Vec<Arc<Stream>>) {
        *self.now.write() = Arc::new(streams);
    }
}

/// Stream names become URL path segments and log words: keep them plain.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a stream name needs 1 to 64 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "'{name}' contains '{c}'; a stream name may use only letters, digits, - and _"
        ));
    }
    Ok(())
}
