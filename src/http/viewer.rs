//! The viewer loop: one long-lived frame response, whatever the endpoint.
//!
//! `/stream` carries one camera and `/mux` several; both are a [`Viewer`] with one [`Track`]
//! per camera. The viewer owns everything a connection needs for its whole life: the socket,
//! its registration with every stream it carries (so `/status` lists it, removed when it
//! drops), the in-flight bound, the `?fps` pacing, repeats of a still picture and the
//! counters. What an endpoint decides is only *what* goes out: which frames a track reads
//! ([`Track::ask_size`]: the source's, or a smaller size of it, decided in
//! [`super::sizing`]), how a part is laid out ([`Layout`]) and what precedes it (`X-Stream:
//! NAME` on `/mux`). Before this type the two endpoints each had a copy of the
//! loop, and they diverged (`/mux?fps` below 1 froze for good while `/stream` did not).
//!
//! Each round the viewer sends the newest frame of the next track (round-robin) that has one
//! it has not sent and whose `?fps` interval has passed, choosing it only once the link has
//! room for it (the in-flight bound): a slow viewer skips frames, never queues them. When no
//! track has anything new for [`REPEAT_AFTER`], the part sent longest ago goes out again. With
//! nothing to do it sleeps: on the slot of its only track, on a [`Subscription`] to the feeds of
//! its tracks (woken by those and no others), or, while every track waits out its `?fps`
//! interval, on the socket itself (so a closed tab frees its thread at once).

use super::conn::Conn;
use super::inflight::{peer_gone, unread, Drained, InFlight};
use super::query::SizeAsk;
use super::sizing::{Size, Sizing};
use super::wire::{describe_write_error, write_all_by, Layout, REPEAT_AFTER};
use super::Shared;
use crate::feed::{Rung, SourceFeed, SourceState, Subscription};
use crate::frame::Frame;
use crate::hub::{ClientKind, Registration, Stream};
use crate::multipart::FRAMED_TRAILER;
use crate::slot::Next;
use crate::tiers::Lease;
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Unread bytes a proxy on a Unix socket may leave when the next frame is ready without its
/// viewer's link counting as busy: none. A proxy whose viewer keeps up reads everything at
/// once (measured through nginx: nothing left at 30 fps on a fast link), and one held back by
/// its viewer leaves part of each frame, less than a frame when the frames are small (8 KB
/// allowed let a viewer at 1/2 that the link carried at 25 of 30 frames/s look idle).
const UNIX_ALLOWANCE: u64 = 0;

/// How often a viewer with nothing new to send looks whether its client is still there: a
/// client that left frees its `--max-clients` slot, its transcoder and an on-demand camera
/// within this (plus `tiers::LINGER` for the transcoder).
const PEER_CHECK: Duration = Duration::from_millis(400);

/// One camera of a viewer: where its frames come from, how they go out, what was sent.
pub(super) struct Track<'a> {
    stream: &'a Stream,
    /// The frames this track sends: the stream's own feed, or a smaller size of it.
    feed: Arc<SourceFeed>,
    /// The smaller size this track reads, kept running while the track holds it.
    lease: Option<Lease>,
    /// The viewer's address: a size it starts counts against it ([`crate::tiers`]).
    ip: Option<IpAddr>,
    /// Which size it reads, and why ([`super::sizing`]).
    sizing: Sizing,
    /// Written before each part (`X-Stream: NAME\r\n` on `/mux`); empty on `/stream`.
    prefix: Vec<u8>,
    layout: Layout,
    /// This viewer in the stream's client list; removed when the track drops.
    reg: Registration<'a>,
    /// Generation last sent (0: none yet).
    sent: u64,
    /// A frame the wait already took from the slot, so the next pick need not look again.
    ready: Option<(Arc<Frame>, u64)>,
    /// When its last *new* frame went out: the `?fps` cap counts these, not repeats.
    last_new: Option<Instant>,
    /// When any part of it went out, repeats included: the oldest is repeated first.
    written_at: Option<Instant>,
    last: Option<Arc<Frame>>,
}

/// Who a track is for: its line in the stream's client list, and the address its sizes
/// count against.
pub(super) struct Who<'r> {
    /// For logs and `/status`: `ip:port`, or `unix`.
    pub addr: &'r str,
    pub ip: Option<IpAddr>,
    pub user_agent: &'r str,
    pub kind: ClientKind,
    pub fps_cap: Option<f64>,
}

impl<'a> Track<'a> {
    /// A track of `stream`'s frames, registered in its client list before anything is
    /// written, so a client that has its head is listed.
    pub fn new(stream: &'a Stream, layout: Layout, prefix: Vec<u8>, who: &Who) -> Track<'a> {
        let reg = stream.clients.register(
            who.addr.to_string(),
            who.user_agent.to_string(),
            who.kind,
            who.fps_cap,
        );
        Track {
            ip: who.ip,
            stream,
            feed: stream.feed.clone(),
            lease: None,
            sizing: Sizing::default(),
            prefix,
            layout,
            reg,
            sent: 0,
            ready: None,
            last_new: None,
            written_at: None,
            last: None,
        }
    }

    /// Reads the size `ask` asks for ([`super::sizing`]): the source's frames, the smallest
    /// size at or above `?width`/`?height` (from the source's picture size, or at its first
    /// frame if it has sent none), or `?size=auto`. `Err` is why not (the `503` text).
    pub fn ask_size(&mut self, ask: SizeAsk, max_pixels: usize) -> Result<(), String> {
        let dims = self.stream.feed.last_dimensions();
        let (sizing, first) = Sizing::new(ask, dims, Instant::now());
        self.sizing = sizing;
        self.reg.info.auto.store(self.sizing.is_auto(), SeqCst);
        match first {
            Some(size) => self.set_size(size, max_pixels),
            None => Ok(()),
        }
    }

    /// Reads `size` (level 0: the source's frames), starting its transcoder if nobody else
    /// reads it. `Err` says why not.
    pub fn set_size(&mut self, size: Size, max_pixels: usize) -> Result<(), String> {
        let level = size.level;
        let lease = match level {
            0 => None,
            _ => Some(self.stream.tiers.lease(
                &self.stream.name,
                &self.stream.feed,
                size,
                max_pixels,
                self.ip,
            )?),
        };
        self.feed = lease
            .as_ref()
            .map_or_else(|| self.stream.feed.clone(), |l| l.tier().feed.clone());
        // The old lease goes only now: a step between sizes never stops a shared transcoder.
        self.lease = lease;
        // Generations count one feed's frames: start afresh on the new one.
        (self.sent, self.ready) = (0, None);
        self.reg.info.level.store(level, SeqCst);
        Ok(())
    }

    /// Bytes per second size `level` needs at `fps`: its newest frame's size when it is
    /// running, else the source frame's shrunk by the ratio measured for JPEG halvings.
    fn need(&self, level: u8, fps: f64) -> f64 {
        let bytes_of = |feed: &SourceFeed| feed.slot.latest().map(|(f, _)| f.jpeg().len() as f64);
        let running = if level == 0 {
            bytes_of(&self.stream.feed)
        } else {
            self.stream
                .tiers
                .snapshot()
                .iter()
                .find(|t| t.size == self.sizing.size(level))
                .and_then(|t| bytes_of(&t.feed))
        };
        let bytes = running.unwrap_or_else(|| {
            // Halving a picture divides its JPEG by 2 to 2.6 (README): 2 is the safe guess.
            bytes_of(&self.stream.feed).unwrap_or(50_000.0) / 2f64.powi(i32::from(level))
        });
        (bytes + 100.0) * fps
    }

    fn wire<'f>(&self, frame: &'f Frame) -> &'f [u8] {
        match self.layout {
            Layout::Framed => frame.wire.framed(),
            Layout::Advance => frame.wire.advance(),
        }
    }
}

/// Why a viewer's response ended; its text ends the "left" log line.
#[derive(Debug)]
pub(super) enum End {
    Stopping,
    Gone,
    /// The in-flight bound saw nothing acknowledged within `--send-timeout`.
    Stalled(Duration),
    /// A write failed, already described.
    Write(String),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Stopping => f.write_str("server shutting down"),
            End::Gone => f.write_str("client closed"),
            End::Stalled(t) => write!(
                f,
                "its unacknowledged data did not drain within --send-timeout ({:.1} s)",
                t.as_secs_f64()
            ),
            End::Write(why) => f.write_str(why),
        }
    }
}

/// How a viewer sleeps when nothing is due.
enum WakeOn {
    /// One track: its slot wakes it (the common case, the cheapest).
    Slot,
    /// Several: woken by a publish of any feed it carries, and no other.
    Feeds(Subscription),
}

/// A long-lived frame response. See the module docs.
pub(super) struct Viewer<'a> {
    conn: Conn,
    addr: String,
    /// For the log: `stream 'door'` or `/mux`.
    what: String,
    tracks: Vec<Track<'a>>,
    /// The in-flight bound ([`super::inflight`]), for TCP viewers; owned by this thread.
    inflight: Option<InFlight>,
    /// A Unix-socket viewer's socket (a reverse proxy's connection): `?size=auto` measures
    /// what the proxy has not read yet.
    unix_fd: Option<RawFd>,
    send_timeout: Duration,
    /// `?fps=`: the shortest time between two new frames of a track.
    min_interval: Option<Duration>,
    /// A still picture is re-sent after REPEAT_AFTER, never more often than the cap allows.
    repeat_after: Duration,
    last_write: Instant,
    /// Bytes written on the connection so far.
    written: u64,
    /// Round-robin position: the track looked at first.
    next: usize,
    wake_on: WakeOn,
    /// `?size=auto` needs it to start a smaller size.
    max_pixels: usize,
    /// `?fps=`, for the rate a size must carry.
    fps_cap: Option<f64>,
    connected_at: Instant,
}

impl<'a> Viewer<'a> {
    /// A viewer of `tracks` (at least one) on `conn`, capped at `fps_cap` new frames per
    /// second per track. [`Viewer::open`] counts it as a client of each stream.
    pub fn new(
        conn: Conn,
        addr: String,
        what: String,
        tracks: Vec<Track<'a>>,
        fps_cap: Option<f64>,
        shared: &Shared,
    ) -> Viewer<'a> {
        let min_interval = fps_cap.map(|f| Duration::from_secs_f64(1.0 / f));
        let inflight = match conn.tcp_fd() {
            Some(fd) if shared.cfg.inflight_bound => InFlight::new(fd),
            _ => None,
        };
        let wake_on = if tracks.len() == 1 {
            WakeOn::Slot
        } else {
            WakeOn::Feeds(Subscription::new(tracks.iter().map(|t| t.feed.clone())))
        };
        let unix_fd = conn.unix_fd();
        Viewer {
            conn,
            addr,
            what,
            tracks,
            inflight,
            unix_fd,
            send_timeout: shared.cfg.send_timeout,
            min_interval,
            repeat_after: min_interval.map_or(REPEAT_AFTER, |i| i.max(REPEAT_AFTER)),
            last_write: Instant::now(),
            written: 0,
            next: 0,
            wake_on,
            max_pixels: shared.cfg.tier_max_pixels,
            fps_cap,
            connected_at: Instant::now(),
        }
    }

    /// Writes the response head and the body's opening (the first boundary line), each
    /// within `--send-timeout`, counting the viewer in each stream's `clients_total`. `false`:
    /// the viewer is gone already. (A HEAD never gets this far: [`super::wire::head_only`].)
    pub fn open(&mut self, head: &[u8], opening: &[u8]) -> bool {
        for t in &self.tracks {
            t.stream.out.clients_total.fetch_add(1, SeqCst);
        }
        let deadline = Instant::now() + self.send_timeout;
        if write_all_by(&mut self.conn, head, deadline)
            .and_then(|_| self.conn.flush())
            .is_err()
        {
            return false;
        }
        let deadline = Instant::now() + self.send_timeout;
        write_all_by(&mut self.conn, opening, deadline).is_ok()
    }

    /// `?rewind=`: writes `frames` (from the history, oldest first) at the pace they came in,
    /// before the live frames; `false`: the viewer is gone. In the framed layout each part
    /// says `X-Replay: 1` (programs read part headers; a browser's advance layout has none
    /// to read). The JPEGs are the history's own, written as they are: no copy.
    pub fn replay(&mut self, frames: &[Arc<Frame>]) -> bool {
        let Some(first) = frames.first() else {
            return true;
        };
        let layout = self.tracks.first().map_or(Layout::Framed, |t| t.layout);
        let prefix = self
            .tracks
            .first()
            .map(|t| t.prefix.clone())
            .unwrap_or_default();
        let start = Instant::now();
        for f in frames {
            let due = start + f.arrived_at.saturating_duration_since(first.arrived_at);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let deadline = Instant::now() + self.send_timeout;
            let written = match layout {
                Layout::Framed => {
                    let head = format!(
                        "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}\r\n\
                         X-Replay: 1\r\n\r\n",
                        f.jpeg().len(),
                        super::date::epoch_seconds(f.arrived)
                    );
                    write_all_by(&mut self.conn, &prefix, deadline)
                        .and_then(|_| write_all_by(&mut self.conn, head.as_bytes(), deadline))
                        .and_then(|_| write_all_by(&mut self.conn, f.jpeg(), deadline))
                        .and_then(|_| write_all_by(&mut self.conn, FRAMED_TRAILER, deadline))
                }
                Layout::Advance => write_all_by(&mut self.conn, f.wire.advance(), deadline),
            };
            if written.is_err() {
                return false;
            }
            self.written += (f.jpeg().len() + 100) as u64;
            self.last_write = Instant::now();
        }
        log::debug!(
            "viewer {} of {}: replayed {} frames ({:.1} s)",
            self.addr,
            self.what,
            frames.len(),
            start.elapsed().as_secs_f64()
        );
        true
    }

    /// Serves until the viewer goes away, stalls or the server stops; logs how it went.
    pub fn run(mut self, detail: &str) {
        log::info!("viewer {} connected to {} ({detail})", self.addr, self.what);
        let end = loop {
            if let Err(end) = self.step() {
                break end;
            }
        };
        let sum = |f: fn(&Track) -> u64| self.tracks.iter().map(f).sum::<u64>();
        log::info!(
            "viewer {} left {} after {:.1} s: {} frames sent, {} skipped ({end})",
            self.addr,
            self.what,
            self.connected_at.elapsed().as_secs_f64(),
            sum(|t| t.reg.info.frames_sent.load(SeqCst)),
            sum(|t| t.reg.info.frames_skipped.load(SeqCst)),
        );
    }

    /// One part out, or one sleep.
    fn step(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if let Some((i, frame, generation)) = self.pick(now) {
            return self.send_new(i, frame, generation);
        }
        if now >= self.last_write + self.repeat_after {
            let oldest = (0..self.tracks.len())
                .filter(|&i| self.tracks[i].last.is_some())
                .min_by_key(|&i| self.tracks[i].written_at);
            match oldest {
                Some(i) => return self.repeat(i),
                // Nothing sent yet: nothing to repeat; wait another interval.
                None => self.last_write = now,
            }
        }
        self.sleep(now)
    }

    /// Whether track `t` may send a new frame at `now` (its `?fps` interval has passed).
    fn due(&self, t: &Track, now: Instant) -> bool {
        self.min_interval
            .is_none_or(|i| t.last_new.is_none_or(|at| now.duration_since(at) >= i))
    }

    /// The next track, from the round-robin position on, that is due and has a frame it has
    /// not sent, with that frame.
    fn pick(&mut self, now: Instant) -> Option<(usize, Arc<Frame>, u64)> {
        if self.tracks.iter().any(|t| t.sizing.is_pending()) {
            self.fit_when_known();
        }
        let n = self.tracks.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.due(&self.tracks[i], now) {
                continue;
            }
            let t = &mut self.tracks[i];
            let newest = t.ready.take().or_else(|| t.feed.slot.latest());
            if let Some((frame, g)) = newest.filter(|(_, g)| *g > t.sent) {
                // An on-demand camera that is not delivering yet still has the last frame of
                // its previous run in the slot, maybe hours old: never send it as current. The
                // viewer gets the STARTING picture (generated) and then the camera's. Looked
                // at only before a track's first frame: no lock on the frame path after that.
                if t.sent == 0 && !frame.no_signal && t.stream.demand.on_demand() {
                    let state = t.stream.feed.source_info().state;
                    if matches!(state, SourceState::Idle | SourceState::Connecting) {
                        t.sent = g;
                        continue;
                    }
                }
                // Right after a change of size the new feed's newest may be a camera frame
                // already sent at the old size (a smaller size trails its source by one
                // transcode): never send a picture older than the last.
                if t.last
                    .as_ref()
                    .is_some_and(|l| frame.arrived_at <= l.arrived_at)
                {
                    t.sent = g;
                    continue;
                }
                return Some((i, frame, g));
            }
        }
        None
    }

    /// Tracks of `?width=` whose camera had sent nothing when the viewer came: sized now
    /// that its picture size is known.
    fn fit_when_known(&mut self) {
        let mut moved = false;
        for t in &mut self.tracks {
            let Some(size) = t.sizing.when_known(t.stream.feed.last_dimensions()) else {
                continue;
            };
            match t.set_size(size, self.max_pixels) {
                Ok(()) => moved |= size.level > 0,
                Err(e) => log::warn!("viewer {} of {}: {e}", self.addr, self.what),
            }
        }
        if moved {
            self.resubscribe();
        }
    }

    /// After a track changed feeds: a several-track viewer listens to the feeds it reads now.
    fn resubscribe(&mut self) {
        if let WakeOn::Feeds(_) = self.wake_on {
            let feeds = self.tracks.iter().map(|t| t.feed.clone());
            self.wake_on = WakeOn::Feeds(Subscription::new(feeds));
        }
    }

    /// Sleeps until something may be due: a new frame of a due track, the end of a `?fps`
    /// interval, or a repeat.
    fn sleep(&mut self, now: Instant) -> Result<(), End> {
        let mut until = self.last_write + self.repeat_after;
        let mut any_due = false;
        if let Some(interval) = self.min_interval {
            for t in &self.tracks {
                match t.last_new {
                    Some(at) if now.duration_since(at) < interval => {
                        until = until.min(at + interval)
                    }
                    _ => any_due = true,
                }
            }
            // A capped viewer may write nothing for seconds: look at the socket while it
            // waits (an uncapped one writes often and notices a closed peer by that).
            if !any_due {
                return self.sleep_on_socket(until);
            }
            if peer_gone(self.conn.as_raw_fd()) {
                return Err(End::Gone);
            }
        }
        // Nothing new for a while (a camera down with `--no-signal-after 0`, a size whose every
        // frame fails): no write will tell that the client left, so look at the socket, every
        // PEER_CHECK while it lasts. A viewer of a live camera writes often and never looks.
        let quiet = self.tracks.iter().all(|t| {
            t.last_new
                .is_none_or(|at| now.duration_since(at) >= PEER_CHECK)
        });
        if quiet {
            if peer_gone(self.conn.as_raw_fd()) {
                return Err(End::Gone);
            }
            until = until.min(now + PEER_CHECK);
        }
        let timeout = until.saturating_duration_since(now);
        match &mut self.wake_on {
            WakeOn::Slot => {
                let t = &mut self.tracks[0];
                match t.feed.slot.wait_newer(t.sent, timeout) {
                    Next::Frame(frame, g) => t.ready = Some((frame, g)),
                    Next::Timeout => {}
                    Next::Closed => return Err(End::Stopping),
                }
            }
            WakeOn::Feeds(sub) => {
                if sub.wait(timeout) == Rung::Closed {
                    return Err(End::Stopping);
                }
            }
        }
        Ok(())
    }

    /// Sleeps until `t` (a `?fps` cap: up to 100 s), waking in steps of at most 100 ms to
    /// notice shutdown, and at once when the viewer goes away: the sleep waits on the socket
    /// itself, so a closed tab frees its thread and its `--max-clients` slot now.
    fn sleep_on_socket(&self, t: Instant) -> Result<(), End> {
        let fd = self.conn.as_raw_fd();
        loop {
            if self.tracks[0].stream.feed.slot.is_closed() {
                return Err(End::Stopping);
            }
            let left = t.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLRDHUP,
                revents: 0,
            };
            let ms = left.min(Duration::from_millis(100)).as_millis().max(1) as i32;
            // SAFETY: one valid pollfd for the viewer's socket, owned by this thread.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                return Err(End::Gone);
            }
            if rc > 0 {
                // Readable but not closed: bytes after the request (pipelined, never read).
                // Sleep the step out instead of spinning on them.
                std::thread::sleep(left.min(Duration::from_millis(100)));
            }
        }
    }

    /// Sends track `i`'s newest frame, `frame` unless a newer one came while the link drained.
    fn send_new(&mut self, i: usize, mut frame: Arc<Frame>, mut g: u64) -> Result<(), End> {
        self.next = (i + 1) % self.tracks.len();
        // ?size=auto: a frame is ready; is the link still busy with what went before? (See
        // the adapt module.)
        if let (Some(bound), Some(meter)) = (&self.inflight, self.tracks[i].sizing.meter()) {
            if self.written == 0 {
                meter.opened(Instant::now(), bound.rtt().unwrap_or_default());
            }
            if let (Some(queued), Some(path)) = (bound.queued(), bound.sample()) {
                let acked = self.written.saturating_sub(queued);
                meter.frame(Instant::now(), acked, queued, bound.allowance(), path);
            }
        } else if let (Some(fd), Some(meter)) = (self.unix_fd, self.tracks[i].sizing.meter()) {
            // Behind a proxy on a Unix socket (the nginx recipe): no round trip and no
            // acknowledgements, but the proxy reads only as fast as its viewer's link takes
            // the bytes on (its buffers towards the viewer are small), so what it has not
            // read when the next frame is ready is that link's backlog, and what it read
            // meanwhile is that link's rate (a blocked write is not counted here: below).
            if self.written == 0 {
                meter.opened(Instant::now(), Duration::ZERO);
            }
            if let Some(queued) = unread(fd) {
                let read = self.written.saturating_sub(queued);
                meter.frame(
                    Instant::now(),
                    read,
                    queued,
                    UNIX_ALLOWANCE,
                    Default::default(),
                );
            }
        }
        // Choose the frame only once the link has room for it: the newest then.
        let handoff = Instant::now();
        if let Some(bound) = &mut self.inflight {
            let slot = &self.tracks[i].feed.slot;
            match bound.wait(slot, Instant::now() + self.send_timeout) {
                Drained::Ready { waited: true } => {
                    if let Some((newest, ng)) = slot.latest().filter(|(_, ng)| *ng > g) {
                        (frame, g) = (newest, ng);
                    }
                }
                Drained::Ready { waited: false } => {}
                Drained::Closed => return Err(End::Stopping),
                Drained::Gone => return Err(End::Gone),
                Drained::Stalled => return Err(End::Stalled(self.send_timeout)),
            }
        }
        let bytes = self.write(i, &frame)? as u64;
        let now = self.last_write;
        let t = &mut self.tracks[i];
        // Behind a proxy on a Unix socket a write that blocked says the link was busy for part
        // of the interval only (the proxy then read the rest and waited for the next frame),
        // and counted as busy throughout it made the link look up to half as fast as it was:
        // there, what the proxy has not read when the next frame is ready is the measure.
        if let (Some(meter), None) = (t.sizing.meter(), self.unix_fd) {
            meter.handed_over(now.saturating_duration_since(handoff));
        }
        let (info, out) = (&t.reg.info, &t.stream.out);
        // Generations count the stream's frames: a gap is what this viewer skipped.
        if t.sent > 0 && g > t.sent + 1 {
            let skipped = g - t.sent - 1;
            info.frames_skipped.fetch_add(skipped, SeqCst);
            out.frames_skipped.fetch_add(skipped, SeqCst);
        }
        info.frames_sent.fetch_add(1, SeqCst);
        info.bytes_sent.fetch_add(bytes, SeqCst);
        out.frames_out.fetch_add(1, SeqCst);
        out.bytes_out.fetch_add(bytes, SeqCst);
        out.observe_delay(now.duration_since(frame.arrived_at));
        t.sent = g;
        t.last_new = Some(now);
        t.written_at = Some(now);
        t.last = Some(frame);
        self.follow_the_link(i, now);
        Ok(())
    }

    /// `?size=auto`: now and then, compares what the link carries with what each size needs,
    /// and moves track `i` to another size when [`Adapt`] says so.
    fn follow_the_link(&mut self, i: usize, now: Instant) {
        let Some((adapt, meter)) = self.tracks[i].sizing.auto_and_meter() else {
            return;
        };
        if !adapt.due(now) && !meter.spans_a_look() {
            return;
        }
        let window = meter.take();
        let t = &self.tracks[i];
        let source_fps = t.stream.feed.input_rate().0;
        let fps = match (source_fps > 0.0, self.fps_cap) {
            (true, Some(cap)) => source_fps.min(cap),
            (true, None) => source_fps,
            (false, cap) => cap.unwrap_or(30.0),
        };
        let needs: Vec<f64> = (0..=crate::scale::MAX_LEVEL)
            .map(|l| t.need(l, fps))
            .collect();
        let need = |l: u8| needs.get(usize::from(l)).copied().unwrap_or(f64::MAX);
        log::trace!(
            "viewer {} of {}: {window:?}; sizes need {needs:.0?} B/s at {fps:.1} fps",
            self.addr,
            self.what
        );
        let Some(level) = self.tracks[i]
            .sizing
            .auto()
            .and_then(|a| a.look(now, window, need))
        else {
            return;
        };
        let size = self.tracks[i].sizing.size(level);
        match self.tracks[i].set_size(size, self.max_pixels) {
            Ok(()) => {
                log::debug!(
                    "viewer {} of {}: size {} (busy {:.0}% of the time, {:.0} KB/s while busy; \
                     {fps:.0} frames/s wanted)",
                    self.addr,
                    self.what,
                    size.fraction(),
                    window.busy_share * 100.0,
                    window.busy_rate.unwrap_or(0.0) / 1000.0,
                );
                self.resubscribe();
            }
            Err(e) => {
                log::warn!("viewer {} of {}: {e}", self.addr, self.what);
                let has = self.tracks[i].reg.info.level.load(SeqCst);
                if let Some(a) = self.tracks[i].sizing.auto() {
                    a.refused(has, now);
                }
            }
        }
    }

    /// Sends track `i`'s last part again (keep-alive for a still picture). A repeat is not a
    /// new frame: the track's `?fps` timer stays (resetting it froze capped cameras for good,
    /// below 1 fps), but its bytes count.
    fn repeat(&mut self, i: usize) -> Result<(), End> {
        let Some(frame) = self.tracks[i].last.clone() else {
            return Ok(());
        };
        let bytes = self.write(i, &frame)? as u64;
        let t = &mut self.tracks[i];
        t.written_at = Some(self.last_write);
        let (info, out) = (&t.reg.info, &t.stream.out);
        info.repeats.fetch_add(1, SeqCst);
        info.bytes_sent.fetch_add(bytes, SeqCst);
        out.repeats.fetch_add(1, SeqCst);
        out.bytes_out.fetch_add(bytes, SeqCst);
        Ok(())
    }

    /// Writes one part of track `i` within `--send-timeout`: its prefix, then the frame's
    /// wire form (one write: it is contiguous, see the multipart module). Returns the bytes.
    fn write(&mut self, i: usize, frame: &Frame) -> Result<usize, End> {
        let t = &self.tracks[i];
        let wire = t.wire(frame);
        let deadline = Instant::now() + self.send_timeout;
        let written = write_all_by(&mut self.conn, &t.prefix, deadline)
            .and_then(|_| write_all_by(&mut self.conn, wire, deadline))
            .and_then(|_| self.conn.flush());
        if let Err(e) = written {
            return Err(End::Write(describe_write_error(&e, self.send_timeout)));
        }
        self.last_write = Instant::now();
        let n = t.prefix.len() + wire.len();
        self.written += n as u64;
        if let Some(bound) = &mut self.inflight {
            bound.wrote(n);
        }
        Ok(n)
    }
}
