//! `?size=auto`: the size a viewer's link carries, chosen per viewer and changed as the link
//! does. Pure logic on what the viewer loop observes (no sockets here), so it is tested
//! without a network.
//!
//! **What is measured** ([`Meter`]). Each time a new frame is about to go out, the viewer
//! notes how many of its bytes are still unacknowledged (`SIOCOUTQ`, which the in-flight
//! bound reads anyway). If more are than the in-flight bound allows (two segments, or one
//! bandwidth-delay product), the link has a backlog and was busy for the whole interval since
//! the last frame, and the bytes acknowledged in it over its length is the link's rate: a
//! *busy* interval. If not, the last frame got through, or is in flight as a link with a
//! long round trip needs it to be: an *idle* one. Counting any unacknowledged byte as busy
//! was wrong on ordinary links: a receiver that delays its ACKs (Windows and macOS by
//! default) leaves the last segment unacknowledged at every frame, and a round trip as long
//! as the frame interval (4G, satellite) leaves the whole last frame; both looked busy at the
//! rate the relay sent, and `auto` walked down to 1/8 on links that carry the full size.
//! An interval is busy too when handing the frame to the kernel (the in-flight wait and the
//! write) took half of it or more: a reader slower than the send buffer drains holds the
//! write, not the queue (on loopback, where data is acknowledged as it is received). Behind
//! a reverse proxy on a Unix socket there are no acknowledgements: what the proxy has not
//! read when the next frame is ready is the backlog (it reads only as fast as its viewer
//! takes the bytes on), and a blocked write is not counted (it covers only part of the
//! interval, and made that link look half as fast as it was). (The
//! kernel's own `tcpi_delivery_rate` is no use for this: while a sender is application-limited
//! — the relay always is — the kernel keeps the highest of its samples, so it never falls.)
//!
//! **What is decided** ([`Adapt`], at each look: every [`LOOK_EVERY`], or as soon as two
//! intervals span one, for a link that carries only two frames a second). Down quickly: when
//! most intervals are busy, the rate is the link's (the path shows a queue, drops or the
//! receiver's window; or, without that, two looks in a row agree on it: a rate still
//! climbing is TCP opening its window), and the size needs more than [`FIT`] of it, go at
//! once to the largest size that fits it; but a size the link was carrying at the last look
//! is left only after two busy looks in a row (one may be a hiccup). A new connection's
//! first seconds show a queue where the link is the limit because the in-flight bound lets
//! it have two bandwidth-delay products then ([`super::inflight::YOUNG`]): that is what
//! lets its first busy look decide. Up cautiously: a link that is idle at the current size
//! tells nothing about a larger one, so after [`UP_AFTER`] of idle intervals the next size
//! up is tried; if that turns the link busy again within [`PROBE_GRACE`], it was too much:
//! back to the size it was tried from (not to what the rate measured while it filled the
//! path's buffers says), and the next try waits twice as long (up to [`MAX_PROBE_WAIT`]). A
//! size that needs more than the rate measured when the link was last
//! the limit waits at least [`RETRY_KNOWN_TOO_SLOW`]: on a steady link a viewer's size
//! changes once. A size is never left for a larger one while the link is busy, so it
//! cannot flip sizes every frame; on a link just below a size, a try costs one or two seconds
//! of the larger frames every minute at most.

use super::inflight::LinkSample;
use std::time::{Duration, Instant};

/// How often the viewer looks at its link.
pub const LOOK_EVERY: Duration = Duration::from_millis(500);
/// A size fits while it needs at most this share of what the link carries when busy.
pub const FIT: f64 = 0.8;
/// Idle this long at a size before the next size up is tried.
pub const UP_AFTER: Duration = Duration::from_secs(4);
/// A try that turns the link busy within this long was one size too many.
pub const PROBE_GRACE: Duration = Duration::from_secs(3);
/// The longest wait between two tries of a size up.
pub const MAX_PROBE_WAIT: Duration = Duration::from_secs(64);
/// The least time between two changes down (a switch takes a few frames to show).
const DOWN_DWELL: Duration = Duration::from_millis(500);
/// A round trip this much above its least (or a quarter more) is a queue on the path.
const QUEUE_MIN: Duration = Duration::from_millis(3);
/// A queue this much longer than the round trip itself ends a new connection's opening.
const DEEP_QUEUE: Duration = Duration::from_millis(50);
/// The wait before trying a size the link was measured too slow for.
pub const RETRY_KNOWN_TOO_SLOW: Duration = Duration::from_secs(30);
/// A busy look's rate above this share of the last one's is still climbing.
const RISING: f64 = 1.15;
/// A new connection's first frames are not counted for this long ...
pub const OPENING_MIN: Duration = Duration::from_millis(800);
/// ... at most this long (a link with a deep queue already full when the viewer connects
/// measures its first round trip in seconds) ...
pub const OPENING_MAX: Duration = Duration::from_secs(2);
/// ... or this many round trips (slow start doubles the window each, and so may a young
/// connection's in-flight bound: 3–4 for a 640x480 camera on a 150 ms path; 10 before the
/// bound's young gain, which cost a 0.3 Mbit/s viewer a second).
pub const OPENING_RTTS: u32 = 6;
/// Intervals a look needs to decide anything ...
const MIN_INTERVALS: u32 = 3;
/// ... or two, when together they span a look: a link that carries 2 frames a second (full
/// size at 0.3 Mbit/s) once took 1.5 s more to gather a third.
const MIN_SLOW_INTERVALS: u32 = 2;
/// The share of busy intervals over which the link counts as the limit, and under which it
/// counts as idle (between the two: neither, and nothing changes).
const BUSY: f64 = 0.5;
const IDLE: f64 = 0.2;

/// The intervals between frames since the last look: how many were busy, and what the link
/// carried in them.
#[derive(Debug, Default)]
pub(super) struct Meter {
    last: Option<(Instant, u64)>,
    /// How long handing the last frame to the kernel took (the in-flight wait and the write).
    handoff: Duration,
    /// Before this, intervals are not counted: the connection is still opening its window.
    opening_until: Option<Instant>,
    /// The path at the last frame.
    path: LinkSample,
    /// Busy intervals whose path showed the cause (a queue, drops, the receiver).
    evidence: u32,
    busy: u32,
    idle: u32,
    busy_bytes: u64,
    busy_time: Duration,
    idle_time: Duration,
}

/// What a look sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Window {
    /// Enough intervals to decide on (see [`MIN_INTERVALS`]).
    pub enough: bool,
    pub intervals: u32,
    /// The share of the time the link was busy (intervals busy throughout, by length).
    pub busy_share: f64,
    /// Bytes per second acknowledged while busy: the link's rate.
    pub busy_rate: Option<f64>,
    /// Most busy intervals showed their cause on the path (a queue, drops, the receiver's
    /// window): the rate is the link's, not a connection still opening its window.
    pub path_evidence: bool,
}

impl Meter {
    /// A new frame is about to go out at `now`: `acked` bytes of the connection are
    /// acknowledged so far, `queued` are not, and `allowance` may be in flight without a
    /// backlog (the in-flight bound's).
    pub fn frame(
        &mut self,
        now: Instant,
        acked: u64,
        queued: u64,
        allowance: u64,
        path: LinkSample,
    ) {
        let before = std::mem::replace(&mut self.path, path);
        if self.opening_until.is_some_and(|t| now < t) {
            // A backlog behind a queue longer than the round trip itself is the link, not
            // slow start (whose bursts queue for milliseconds): the opening ends here. At
            // 0.3 Mbit/s one full-size frame queues for 0.4 s; waiting out the opening cost
            // such a viewer up to a second before its first look.
            if queued > allowance && path.rtt >= path.min_rtt * 2 + DEEP_QUEUE {
                self.opening_until = None;
            }
            self.last = Some((now, acked));
            return;
        }
        if let Some((t, a)) = self.last {
            let dt = now.saturating_duration_since(t);
            // A backlog: the kernel still holds more than the in-flight bound allows, or
            // handing the last frame over took most of the interval (a reader slower than
            // the socket buffer drains shows in a blocked write, not in the queue) ...
            let backlog = queued > allowance || self.handoff * 2 >= dt;
            // Whether the path shows why: a queue on it (the round trip above its least),
            // drops, or the receiver's window. Not always: the in-flight bound keeps a slow
            // link's queue short, so a backlog alone counts; this only tells how sure the
            // rate measured then is ([`Window::path_evidence`]).
            let queue = path.rtt > path.min_rtt + (path.min_rtt / 4).max(QUEUE_MIN);
            let drops = path.retrans > before.retrans;
            let receiver = path.rwnd_limited.saturating_sub(before.rwnd_limited) * 4 >= dt;
            if backlog && (queue || drops || receiver) {
                self.evidence += 1;
            }
            if backlog {
                self.busy += 1;
                self.busy_bytes += acked.saturating_sub(a);
                self.busy_time += dt;
            } else {
                self.idle += 1;
                self.idle_time += dt;
            }
        }
        self.last = Some((now, acked));
    }

    /// A new connection with round trip `rtt`: its first frames wait for TCP's slow start
    /// (the window doubles each round trip from ten segments), not for the link, so they are
    /// not counted for [`OPENING_RTTS`] round trips, at least [`OPENING_MIN`] and at most
    /// [`OPENING_MAX`], unless a deep queue shows first ([`Meter::frame`]).
    /// Counted, a 150 ms round trip sent every new viewer to 1/8 and back up step by step.
    pub fn opened(&mut self, now: Instant, rtt: Duration) {
        let opening = (rtt * OPENING_RTTS).clamp(OPENING_MIN, OPENING_MAX);
        self.opening_until = Some(now + opening);
    }

    /// The frame that went out after the last [`Meter::frame`] took `took` to hand over.
    pub fn handed_over(&mut self, took: Duration) {
        self.handoff = took;
    }

    /// Whether the intervals so far span a look already: a link that carries 2 frames a
    /// second has its second interval in at 0.9 s, and waiting for the next look on the clock
    /// (the first frame after [`LOOK_EVERY`]) cost it another frame, 0.45 s.
    pub fn spans_a_look(&self) -> bool {
        self.busy + self.idle >= MIN_SLOW_INTERVALS && self.busy_time + self.idle_time >= LOOK_EVERY
    }

    /// The intervals since the last call, and a fresh start once there are enough to
    /// decide on ([`MIN_INTERVALS`], [`MIN_SLOW_INTERVALS`]); fewer are kept and counted on
    /// (a slow link sends two frames a second, and half a second's look at it once threw
    /// them away every time).
    pub fn take(&mut self) -> Window {
        let intervals = self.busy + self.idle;
        let span = self.busy_time + self.idle_time;
        let enough =
            intervals >= MIN_INTERVALS || (intervals >= MIN_SLOW_INTERVALS && span >= LOOK_EVERY);
        let w = Window {
            enough,
            intervals,
            // By time, not by count: a link that holds every other frame for 0.4 s and lets
            // the next through at once is busy most of the time, not half of it.
            busy_share: match span.as_secs_f64() {
                t if t > 0.0 => self.busy_time.as_secs_f64() / t,
                _ => 0.0,
            },
            busy_rate: (self.busy_time >= Duration::from_millis(20))
                .then(|| self.busy_bytes as f64 / self.busy_time.as_secs_f64()),
            path_evidence: self.evidence * 2 >= self.busy.max(1),
        };
        if enough {
            (self.busy, self.idle, self.busy_bytes) = (0, 0, 0);
            (self.busy_time, self.idle_time) = (Duration::ZERO, Duration::ZERO);
        }
        w
    }
}

#[derive(Debug)]
pub(super) struct Adapt {
    level: u8,
    max_level: u8,
    switched_at: Instant,
    /// Since when the link has been idle at this size.
    idle_since: Option<Instant>,
    /// The current size is a try of a larger one, made at `switched_at`.
    trying: bool,
    /// How long to stay idle before the next try.
    probe_wait: Duration,
    last_look: Instant,
    /// The rate the last look measured while the link was busy, if it was.
    last_busy_rate: Option<f64>,
    /// What the link carried when it last was the limit (bytes/s), until a try of a larger
    /// size holds.
    capacity: Option<f64>,
    /// A look found the link idle at this size since it was taken: the link carries it, and
    /// one busy look is not enough to leave it.
    carried: bool,
}

impl Adapt {
    /// Starts at the source size (level 0): on a link that carries it nothing is transcoded.
    pub fn new(max_level: u8, now: Instant) -> Adapt {
        Adapt {
            level: 0,
            max_level,
            switched_at: now,
            idle_since: None,
            trying: false,
            probe_wait: UP_AFTER,
            last_look: now,
            last_busy_rate: None,
            capacity: None,
            carried: false,
        }
    }

    /// Whether it is time to look again.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.last_look + LOOK_EVERY
    }

    /// One look at `w`; `need(level)` is what a size needs (bytes/s at the target rate). The
    /// new level when it changes.
    pub fn look(&mut self, now: Instant, w: Window, need: impl Fn(u8) -> f64) -> Option<u8> {
        self.last_look = now;
        if !w.enough {
            return None; // too few frames to tell (a paused source, a capped rate)
        }
        if self.trying && now.duration_since(self.switched_at) >= PROBE_GRACE {
            // The try held: the link has grown past what was measured, and the next try
            // comes as soon as this size is idle long enough.
            self.trying = false;
            self.probe_wait = UP_AFTER;
            self.capacity = None;
        }
        if w.busy_share >= BUSY {
            self.idle_since = None;
            let rate = w.busy_rate?;
            // A rate still climbing may be TCP opening its window (slow start doubles it
            // every round trip), not the link: without a queue on the path to say otherwise,
            // decide on a rate that two looks agree on.
            let settled = w.path_evidence
                || self
                    .last_busy_rate
                    .is_some_and(|before| rate <= before * RISING);
            // A size the link was carrying at the last look is left only when a second busy
            // look follows: one may be a hiccup (a stall of ACKs for 100 ms on a steady
            // 200 KB/s link measured 54 KB/s, with a queue to show for it, and sent a viewer
            // from 1/4 to 1/8). A new viewer, or a try of a larger size, decides at once.
            let confirmed = !self.carried || self.last_busy_rate.is_some();
            self.last_busy_rate = Some(rate);
            if need(self.level) <= FIT * rate
                || now.duration_since(self.switched_at) < DOWN_DWELL
                || !settled
                || !confirmed
            {
                return None;
            }
            // Remembered (and larger sizes tried only after a long wait) when the path
            // showed why; otherwise it may have been a window still opening.
            self.capacity = w.path_evidence.then_some(rate);
            let fits = (self.level + 1..=self.max_level)
                .find(|&l| need(l) <= FIT * rate)
                .unwrap_or(self.max_level);
            // A try that failed goes back to the size it was tried from, which the link was
            // carrying: the rate measured while a larger size fills the path's buffers is
            // the least sure there is (behind a proxy it read 120-190 KB/s of a 220 KB/s
            // link, and sent the viewer two sizes down instead of one). If the link has
            // really fallen, the next looks at that size say so.
            let to = if self.trying {
                self.trying = false;
                self.probe_wait = (self.probe_wait * 2).min(MAX_PROBE_WAIT);
                (self.level + 1).min(self.max_level)
            } else {
                fits
            };
            return self.switch(to, now);
        }
        self.last_busy_rate = None;
        if w.busy_share <= IDLE {
            self.carried = true;
        }
        if w.busy_share > IDLE || self.level == 0 {
            self.idle_since = None;
            return None;
        }
        let since = *self.idle_since.get_or_insert(now);
        let to = self.level - 1;
        // A size the link was measured too slow for is tried again only after a long wait
        // (the link may have grown, and nothing else tells): on a steady link a viewer's
        // size changes once, not every few seconds.
        let wait = match self.capacity {
            Some(c) if need(to) > FIT * c => self.probe_wait.max(RETRY_KNOWN_TOO_SLOW),
            _ => self.probe_wait,
        };
        if now.duration_since(since) >= wait {
            self.trying = true;
            return self.switch(to, now);
        }
        None
    }

    /// The size [`Adapt::look`] chose could not be had (a size refused: too many running,
    /// or too many from this address): it stays at `level`, the one it has, and waits as
    /// after a failed try before asking again.
    pub fn refused(&mut self, level: u8, now: Instant) {
        self.level = level;
        self.carried = false;
        self.switched_at = now;
        self.idle_since = None;
        self.trying = false;
        self.probe_wait = (self.probe_wait * 2).min(MAX_PROBE_WAIT);
    }

    fn switch(&mut self, to: u8, now: Instant) -> Option<u8> {
        if to == self.level {
            return None;
        }
        self.level = to;
        self.switched_at = now;
        self.idle_since = None;
        self.carried = false;
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes per frame of each size: 16 KB, 8.7 KB, 4.3 KB, 1.6 KB (testsrc at 640x480).
    const SIZES: [f64; 4] = [16_000.0, 8_700.0, 4_300.0, 1_600.0];

    fn need(l: u8) -> f64 {
        SIZES[usize::from(l)] * 30.0
    }

    /// What a 30 fps viewer of size `level` sees in half a second on a link of `rate` B/s:
    /// busy intervals when a frame does not get through in 33 ms.
    fn window(level: u8, rate: f64) -> Window {
        let busy = SIZES[usize::from(level)] / rate > 1.0 / 30.0;
        Window {
            enough: true,
            intervals: 15,
            busy_share: if busy { 1.0 } else { 0.0 },
            busy_rate: busy.then_some(rate),
            path_evidence: busy,
        }
    }

    fn run(a: &mut Adapt, t0: Instant, from_ms: u64, to_ms: u64, rate: f64) -> Vec<(u64, u8)> {
        let mut changes = Vec::new();
        let mut ms = from_ms;
        while ms < to_ms {
            let w = window(a.level, rate);
            if let Some(l) = a.look(t0 + Duration::from_millis(ms), w, need) {
                changes.push((ms, l));
            }
            ms += 500;
        }
        changes
    }

    /// A refused size is not taken for the one it has: the next look starts from the size
    /// the viewer really has (the bug: it stayed "at 1/2" while sending full size, for good).
    #[test]
    fn a_refused_size_leaves_the_level_it_has() {
        let t0 = Instant::now();
        let mut a = Adapt::new(3, t0);
        let slow = 100_000.0; // 1/2 fits, full does not
        let mut now = t0 + DOWN_DWELL;
        let to = a.look(now, window(0, slow), need).expect("steps down");
        assert!(to >= 1);
        a.refused(0, now);
        assert_eq!(a.level, 0);
        // Still too slow for full size: it asks again, once the wait is over.
        let mut again = None;
        for _ in 0..40 {
            now += LOOK_EVERY;
            again = again.or(a.look(now, window(0, slow), need));
        }
        assert_eq!(again, Some(to));
    }

    /// A failed try goes back to the size it was tried from, whatever the rate measured while
    /// the larger size filled the path's buffers says (behind a proxy that rate was as noisy
    /// as 120-190 KB/s on a 220 KB/s link, and sent a viewer from a try of 1/2 to 1/8).
    #[test]
    fn a_failed_try_goes_back_to_the_size_it_was_tried_from() {
        let t0 = Instant::now();
        let link = 200_000.0; // 1/4 fits (129 KB/s), 1/2 (261 KB/s) does not
        let mut a = Adapt::new(3, t0);
        assert_eq!(run(&mut a, t0, 500, 2000, link), [(500, 2)]);
        // Idle at 1/4 long enough (the link was measured too slow for 1/2: 30 s): 1/2 is
        // tried.
        let mut at = t0 + Duration::from_millis(2000);
        while a.look(at, window(2, link), need).is_none() {
            at += LOOK_EVERY;
            assert!(at < t0 + Duration::from_secs(60), "no try in a minute");
        }
        assert_eq!(a.level, 1);
        at += LOOK_EVERY;
        // The try makes the link busy, at a rate that would say 1/8 (1/4 needs 129 KB/s).
        let noisy = Window {
            enough: true,
            intervals: 15,
            busy_share: 0.9,
            busy_rate: Some(130_000.0),
            path_evidence: false,
        };
        assert_eq!(a.look(at, noisy, need), None, "one look is not a rate");
        assert_eq!(a.look(at + LOOK_EVERY, noisy, need), Some(2), "back to 1/4");
        // The control: a viewer at 1/2 that was not trying, on the same rate: 1/8.
        let mut b = Adapt::new(3, t0);
        b.level = 1;
        b.last_look = at;
        assert_eq!(b.look(at, noisy, need), None);
        assert_eq!(b.look(at + LOOK_EVERY, noisy, need), Some(3));
    }

    /// A path with a queue on it: the round trip well above its least.
    const QUEUED: LinkSample = LinkSample {
        rtt: Duration::from_millis(120),
        min_rtt: Duration::from_millis(20),
        rwnd_limited: Duration::ZERO,
        retrans: 0,
    };

    /// A backlog is busy whatever the path shows; the path tells whether the rate is surely
    /// the link's (a queue, drops, the receiver's window) or may be a window still opening.
    #[test]
    fn a_backlog_counts_only_when_the_path_is_its_cause() {
        let t0 = Instant::now();
        let ms = |k: u64| t0 + Duration::from_millis(k);
        let clear = LinkSample {
            rtt: Duration::from_millis(151),
            min_rtt: Duration::from_millis(150),
            ..LinkSample::default()
        };
        let at = |k: u64, base: LinkSample| LinkSample {
            retrans: base.retrans + u32::from(base.retrans > 0) * k as u32,
            rwnd_limited: base.rwnd_limited * k as u32,
            ..base
        };
        for (what, path, evidence) in [
            ("opening its window", clear, false),
            ("a queue", QUEUED, true),
            (
                "drops",
                LinkSample {
                    retrans: 1,
                    ..clear
                },
                true,
            ),
            (
                "a slow receiver",
                LinkSample {
                    rwnd_limited: Duration::from_millis(30),
                    ..clear
                },
                true,
            ),
        ] {
            let mut m = Meter::default();
            for k in 0..10u64 {
                m.frame(ms(k * 33), k * 8_000, 40_000, 2_896, at(k, path));
            }
            let w = m.take();
            assert_eq!(w.busy_share, 1.0, "{what}");
            assert_eq!(w.path_evidence, evidence, "{what}");
        }
    }

    #[test]
    fn the_meter_tells_busy_from_idle_intervals() {
        let mut m = Meter::default();
        let t0 = Instant::now();
        let ms = |k: u64| t0 + Duration::from_millis(k);
        let allowance = 2_896; // two Ethernet segments
        m.frame(ms(0), 0, 0, allowance, QUEUED);
        m.frame(ms(33), 5_000, 11_000, allowance, QUEUED); // 5 KB acked in 33 ms, 11 KB left: busy
        m.frame(ms(66), 13_000, 3_000, allowance, QUEUED);
        m.frame(ms(100), 16_000, 0, allowance, QUEUED); // all through: idle
        let w = m.take();
        assert_eq!(w.intervals, 3);
        assert!((w.busy_share - 0.66).abs() < 1e-9, "66 of 100 ms busy");
        let rate = w.busy_rate.unwrap();
        assert!((rate - 13_000.0 / 0.066).abs() < 1.0, "{rate}");
        assert_eq!(m.take().intervals, 0, "taken");
    }

    /// A receiver that delays its ACKs leaves a segment unacknowledged at every frame, and a
    /// long round trip a whole frame in flight: neither is a backlog, the link is idle. (The
    /// control: the same intervals counted against no allowance, as before, look busy.)
    #[test]
    fn delayed_acks_and_long_round_trips_are_not_a_busy_link() {
        let t0 = Instant::now();
        let ms = |k: u64| t0 + Duration::from_millis(k);
        let frame = 16_000u64;
        for (what, unacked, allowance) in [
            ("delayed ACK", 1_448, 2_896),
            ("150 ms round trip, 10 MB/s", frame, 1_500_000),
        ] {
            let (mut m, mut control) = (Meter::default(), Meter::default());
            for k in 0..15u64 {
                let acked = k * frame - unacked.min(k * frame);
                m.frame(ms(k * 33), acked, unacked, allowance, QUEUED);
                control.frame(ms(k * 33), acked, unacked, 0, QUEUED);
            }
            assert_eq!(m.take().busy_share, 0.0, "{what}");
            assert_eq!(control.take().busy_share, 1.0, "{what}: the control");
        }
    }

    /// A new connection's window opening, on a path with no queue: the busy rate doubles
    /// look after look, and no size is chosen from it; once two looks agree, the size that
    /// fits is. (With a queue on the path, the first busy look decides: the other tests.)
    #[test]
    fn a_rate_still_climbing_is_not_the_links() {
        let t0 = Instant::now();
        let mut a = Adapt::new(3, t0);
        let busy = |rate: f64| Window {
            enough: true,
            intervals: 15,
            busy_share: 1.0,
            busy_rate: Some(rate),
            path_evidence: false,
        };
        let mut now = t0;
        for rate in [30e3, 60e3, 120e3, 240e3] {
            now += LOOK_EVERY;
            assert_eq!(a.look(now, busy(rate), need), None, "{rate}");
        }
        now += LOOK_EVERY;
        // 250 KB/s, as the last: settled, and 1/4 (129 KB/s) is what fits.
        assert_eq!(a.look(now, busy(250e3), need), Some(2));
    }

    /// Two frames a second on a link that carries no more: the looks add them up until
    /// there are enough to decide (they were thrown away at every look before).
    #[test]
    fn a_slow_link_is_decided_from_frames_gathered_over_several_looks() {
        let t0 = Instant::now();
        let mut a = Adapt::new(3, t0);
        let mut m = Meter::default();
        let frame = 166_000u64;
        let mut decided = None;
        for k in 0..12u64 {
            let now = t0 + Duration::from_millis(550 * k);
            // 300 KB/s: when the next frame is ready, 136 KB of the last are still queued,
            // and one frame's bytes were acknowledged in each 550 ms.
            let sent = (k + 1) * frame;
            m.frame(now, sent - 136_000, 136_000, 2_896, QUEUED);
            if a.due(now) && decided.is_none() {
                decided = a.look(now, m.take(), |l| {
                    frame as f64 / 2f64.powi(i32::from(l)) * 10.0
                });
            }
        }
        assert_eq!(
            decided,
            Some(3),
            "1/8 (20 KB at 10 fps) fits 300 KB/s, 1/4 does not"
        );
    }

    /// A new connection's opening ends at a backlog behind a queue longer than the round
    /// trip: that is the link. A short queue (slow start's bursts, a delayed ACK) does not
    /// end it (the control).
    #[test]
    fn a_deep_queue_ends_the_opening_and_a_short_one_does_not() {
        let t0 = Instant::now();
        let ms = |k: u64| t0 + Duration::from_millis(k);
        let path = |rtt: u64| LinkSample {
            rtt: Duration::from_millis(rtt),
            min_rtt: Duration::from_millis(150),
            ..LinkSample::default()
        };
        for (rtt, counted) in [(700, 2), (340, 0)] {
            let mut m = Meter::default();
            m.opened(t0, Duration::from_millis(150)); // 0.9 s
            for k in 0..3u64 {
                m.frame(ms(400 * k), k * 16_000, 20_000, 11_000, path(rtt));
            }
            assert_eq!(m.take().intervals, counted, "round trip {rtt} ms");
        }
    }

    /// A hiccup at a size the link carries (one busy look, with a queue to show, at a rate
    /// far below the link's) is not a slower link; two busy looks in a row are (the control).
    #[test]
    fn one_busy_look_at_a_size_the_link_carries_is_a_hiccup() {
        let t0 = Instant::now();
        let link = 200_000.0; // 1/4 fits
        let hiccup = Window {
            enough: true,
            intervals: 12,
            busy_share: 0.5,
            busy_rate: Some(54_000.0),
            path_evidence: true,
        };
        for second_look_busy in [false, true] {
            let mut a = Adapt::new(3, t0);
            assert_eq!(run(&mut a, t0, 500, 1000, link), [(500, 2)]);
            assert_eq!(run(&mut a, t0, 1000, 5000, link), [], "carried");
            let at = t0 + Duration::from_millis(5000);
            assert_eq!(a.look(at, hiccup, need), None, "one look");
            let next = if second_look_busy {
                hiccup
            } else {
                window(2, link)
            };
            let to = a.look(at + LOOK_EVERY, next, need);
            assert_eq!(to, second_look_busy.then_some(3), "{second_look_busy}");
        }
    }

    /// Two frames a second: two intervals that span a look are enough to decide on; two of
    /// a fast link are not (the control: the same count, 66 ms).
    #[test]
    fn two_long_intervals_decide_and_two_short_ones_do_not() {
        let t0 = Instant::now();
        for (gap_ms, enough) in [(450, true), (33, false)] {
            let mut m = Meter::default();
            for k in 0..3u64 {
                let at = t0 + Duration::from_millis(gap_ms * k);
                m.frame(at, k * 16_000, 20_000, 2_896, QUEUED);
            }
            let w = m.take();
            assert_eq!((w.intervals, w.enough), (2, enough), "{gap_ms} ms");
            let mut a = Adapt::new(3, t0);
            let now = t0 + Duration::from_secs(1);
            let to = a.look(now, w, need);
            assert_eq!(to.is_some(), enough, "{gap_ms} ms: {to:?}");
            assert_eq!(
                m.take().intervals,
                if enough { 0 } else { 2 },
                "kept until enough"
            );
        }
    }

    #[test]
    fn down_at_once_then_tries_up_with_growing_waits_and_comes_back_when_the_link_does() {
        let t0 = Instant::now();
        let mut a = Adapt::new(3, t0);
        // 10 MB/s: everything gets through, the source size stays.
        assert_eq!(run(&mut a, t0, 500, 5_000, 10e6), []);
        // 2 Mbit/s (250 KB/s): full (480 KB/s) and 1/2 (261 KB/s) do not fit; 1/4 does.
        let shaped = run(&mut a, t0, 5_000, 65_000, 250e3);
        // Down at the second busy look: the link carried the full size until then, so the
        // first may have been a hiccup; two in a row, with a queue on the path, are the link.
        assert_eq!(shaped.first(), Some(&(5_500, 2)), "{shaped:?}");
        // Tries of 1/2 come after 4 s, then 8, 16, 32 s of 1/4: few, and fewer.
        let tries: Vec<u64> = shaped.iter().filter(|c| c.1 == 1).map(|c| c.0).collect();
        assert!(tries.len() <= 4, "{shaped:?}");
        assert!(tries.windows(2).all(|w| w[1] - w[0] >= 8_000), "{shaped:?}");
        assert!(
            shaped.iter().all(|c| c.1 >= 1),
            "never full size on 2 Mbit/s: {shaped:?}"
        );
        // The shaping is lifted: back to the source size, a step at a time.
        let lifted = run(&mut a, t0, 65_000, 65_000 + 140_000, 10e6);
        assert_eq!(lifted.last().map(|c| c.1), Some(0), "{lifted:?}");
        assert!(
            lifted.len() <= 2,
            "one step at a time, no going back: {lifted:?}"
        );
    }

    #[test]
    fn a_link_that_carries_a_size_keeps_it() {
        let t0 = Instant::now();
        let mut a = Adapt::new(3, t0);
        // 600 KB/s: full size (480 KB/s) fits; it stays, look after look.
        assert_eq!(run(&mut a, t0, 500, 120_000, 600e3), []);
    }

    #[test]
    fn nothing_fits_means_the_smallest_and_few_frames_mean_no_decision() {
        let t0 = Instant::now();
        let mut a = Adapt::new(3, t0);
        let starved = Window {
            enough: true,
            intervals: 15,
            busy_share: 1.0,
            busy_rate: Some(1_000.0),
            path_evidence: true,
        };
        assert_eq!(a.look(t0 + Duration::from_secs(1), starved, need), Some(3));
        let quiet = Window {
            enough: false,
            intervals: 2,
            busy_share: 0.0,
            busy_rate: None,
            path_evidence: false,
        };
        assert_eq!(a.look(t0 + Duration::from_secs(60), quiet, need), None);
    }
}
