//! The pump: one upstream connection's bytes through the sans-IO
//! [`Parser`](crate::parser::Parser) into a [`SourceFeed`]. Every source kind that reads bytes
//! (all but `testsrc` and `file:` of single pictures) hands its reader to a [`Pump`].

use crate::feed::{SourceFeed, SourceState};
use crate::frame::Frame;
use crate::parser::{DropReason, Event, Parser, Stats};
use std::io::{self, Read};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Bytes asked of the kernel per read. Big enough to take a whole small frame in one call.
const READ_CHUNK: usize = 64 * 1024;

/// Feeds one upstream connection's bytes through a parser into the feed.
pub struct Pump {
    feed: Arc<SourceFeed>,
    parser: Parser,
    reported: Stats,
    /// Where the upstream is, for log lines.
    label: String,
    drops: DropLog,
    format_logged: bool,
    /// Appended to the "first frame" log line (the reconnect loop says how long it was down).
    pub first_frame_note: String,
    /// Bytes this pump was fed.
    bytes: u64,
    /// Checked after every read: true ends the connection (a fallback no longer needed).
    pub stop_when: Option<Box<dyn FnMut() -> bool + Send>>,
    stopped: bool,
    /// Frames completed by the current chunk, published once the chunk's counters are in
    /// `/status` (so a viewer that got the frame after a bad part sees that part counted).
    /// Holds at most the frames of one read; emptied, capacity kept, on every chunk.
    ready: Vec<(Vec<u8>, Option<u64>)>,
    /// The upstream (another relay) is sending its NO SIGNAL picture: the camera behind it is
    /// down, so this source is down too, though its connection is alive (see [`Pump::feed`]).
    upstream_dark: bool,
    /// A real frame has marked the stream live on this connection.
    marked_live: bool,
    /// Frames still to discard on this connection (`--warmup`, from the feed).
    warmup_left: u32,
}

impl Pump {
    pub fn new(feed: Arc<SourceFeed>, max_frame_bytes: usize, label: String) -> Pump {
        Pump::with_parser(feed, Parser::new(max_frame_bytes), label)
    }

    /// A pump whose parser was made by the caller (e.g. with a boundary from HTTP headers).
    pub fn with_parser(feed: Arc<SourceFeed>, parser: Parser, label: String) -> Pump {
        let warmup_left = feed.warmup.load(Relaxed);
        Pump {
            feed,
            parser,
            reported: Stats::default(),
            label,
            drops: DropLog::default(),
            format_logged: false,
            first_frame_note: String::new(),
            bytes: 0,
            stop_when: None,
            stopped: false,
            ready: Vec::new(),
            upstream_dark: false,
            marked_live: false,
            warmup_left,
        }
    }

    /// Reads until end of stream or error; returns `Ok` on a clean end of feed.
    pub fn run(&mut self, reader: &mut dyn Read) -> io::Result<()> {
        self.run_until_silent(reader, None)
    }

    /// Like [`run`](Self::run), but gives up once no whole frame has arrived for `silence`.
    /// The reader must itself time out (socket read timeout, poll) for a fully silent upstream
    /// to be noticed; this catches one that sends bytes but never a frame.
    pub fn run_until_silent(
        &mut self,
        reader: &mut dyn Read,
        silence: Option<Duration>,
    ) -> io::Result<()> {
        // Owned by this pump, freed with it: the only per-upstream buffer besides the parser's.
        let mut buf = vec![0u8; READ_CHUNK];
        let result = self.pump_until_silent(reader, silence, &mut buf);
        // Whatever the end, a frame still in the parser is lost: count it.
        if self.parser.buffered() > 0 {
            self.feed.stats.truncated.fetch_add(1, Relaxed);
            log::debug!(
                "stream '{}': {} ended mid-frame ({} bytes dropped)",
                self.feed.name,
                self.label,
                self.parser.buffered()
            );
        }
        result
    }

    fn pump_until_silent(
        &mut self,
        reader: &mut dyn Read,
        silence: Option<Duration>,
        buf: &mut [u8],
    ) -> io::Result<()> {
        let mut last_frame = Instant::now();
        let mut frames = self.frames();
        let silent = |d: Duration| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no whole frame for {:.1} s (--source-timeout)",
                    d.as_secs_f64()
                ),
            )
        };
        loop {
            let n = match reader.read(buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && silence.is_some() =>
                {
                    return Err(silent(last_frame.elapsed()));
                }
                Err(e) => return Err(e),
            };
            self.feed(buf.get(..n).unwrap_or_default());
            if let Some(stop) = &mut self.stop_when {
                if stop() {
                    self.stopped = true;
                    return Ok(());
                }
            }
            if self.frames() != frames {
                frames = self.frames();
                last_frame = Instant::now();
            } else if let Some(limit) = silence {
                if last_frame.elapsed() >= limit {
                    return Err(silent(last_frame.elapsed()));
                }
            }
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        self.feed
            .stats
            .bytes_in
            .fetch_add(bytes.len() as u64, Relaxed);
        let feed = &self.feed;
        let drops = &mut self.drops;
        let label = &self.label;
        let ready = &mut self.ready;
        let mut captured = None;
        self.parser.push(bytes, &mut |event| match event {
            Event::Captured(us) => captured = Some(us),
            Event::Frame(jpeg) => ready.push((jpeg, captured.take())),
            Event::Dropped(reason) => drops.note(feed, label, reason),
        });
        self.sync_stats();
        if !self.ready.is_empty() && !self.format_logged {
            self.format_logged = true;
            let format = self.parser.format().to_string();
            log::info!(
                "stream '{}': first frame from {} ({format}){}",
                self.feed.name,
                self.label,
                self.first_frame_note
            );
            self.feed.set_format(format);
        }
        let mut ready = std::mem::take(&mut self.ready);
        for (jpeg, captured) in ready.drain(..) {
            // An upstream relay whose own camera is down sends its NO SIGNAL picture about
            // once a second. Those are not frames of this source: passing them on as live would
            // keep an edge on a dead camera forever (its failover never fires, `/snapshot`
            // serves the picture of an error). So the source counts as down while they come,
            // with the connection kept open, so the camera's return is seen at once.
            let dark = crate::nosignal::is_no_signal(&jpeg);
            if dark {
                self.feed.stats.no_signal_parts.fetch_add(1, Relaxed);
            }
            if dark != self.upstream_dark {
                self.upstream_dark = dark;
                self.dark_changed(dark);
            }
            if dark {
                continue;
            }
            // --warmup: the camera's first pictures (exposure still settling) reach nobody:
            // not the slot, not the history, not a snapshot; the stream stays STARTING.
            if self.warmup_left > 0 {
                self.warmup_left -= 1;
                self.feed.stats.warmup_discarded.fetch_add(1, Relaxed);
                continue;
            }
            if !self.marked_live {
                self.marked_live = true;
                self.feed.set_live();
            }
            // The camera's own time where the upstream gave one (an upstream relay's
            // X-Timestamp), else when this frame was completed here.
            match captured {
                Some(us) => self.feed.publish_frame(Arc::new(Frame::captured(
                    &jpeg,
                    UNIX_EPOCH + Duration::from_micros(us),
                ))),
                None => self.feed.publish(&jpeg),
            };
        }
        self.ready = ready;
    }

    /// The upstream started or stopped sending NO SIGNAL pictures.
    fn dark_changed(&mut self, dark: bool) {
        let name = &self.feed.name;
        if dark {
            let why = format!(
                "{} sends a NO SIGNAL picture: the camera behind it is down",
                self.label
            );
            log::warn!("stream '{name}': {why}; this source counts as lost until it has a picture");
            self.feed.set_error(why);
            let peer = self.feed.source_info().peer;
            self.feed.set_state(SourceState::Lost, peer);
            self.marked_live = false;
        } else {
            log::info!("stream '{name}': {} has a picture again", self.label);
        }
    }

    /// Adds what the parser counted since the last call to the stream's totals.
    fn sync_stats(&mut self) {
        let now = self.parser.stats();
        let src = &self.feed.stats;
        let add = |c: &std::sync::atomic::AtomicU64, new: u64, old: u64| {
            if new > old {
                c.fetch_add(new - old, Relaxed);
            }
        };
        add(&src.not_jpeg, now.not_jpeg, self.reported.not_jpeg);
        add(&src.oversized, now.oversized, self.reported.oversized);
        add(
            &src.header_too_long,
            now.header_too_long,
            self.reported.header_too_long,
        );
        add(
            &src.garbage_bytes,
            now.garbage_bytes,
            self.reported.garbage_bytes,
        );
        if now.boundary_changes > self.reported.boundary_changes {
            log::warn!(
                "stream '{}': {} changed its multipart boundary mid-feed; following it",
                self.feed.name,
                self.label
            );
        }
        add(
            &src.boundary_changes,
            now.boundary_changes,
            self.reported.boundary_changes,
        );
        self.reported = now;
    }

    /// Frames this pump has produced; zero after a connection that sent bytes means the
    /// upstream is not sending MJPEG at all.
    pub fn frames(&self) -> u64 {
        self.parser.stats().frames
    }

    /// Whether the pump ended because [`Pump::stop_when`] said so.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Bytes this pump was fed; zero means the upstream sent nothing at all.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Logs dropped parts without flooding (see [`crate::logger::Throttled`]).
#[derive(Debug, Default)]
struct DropLog(crate::logger::Throttled);

impl DropLog {
    fn note(&mut self, feed: &SourceFeed, label: &str, reason: DropReason) {
        self.0.note(|suppressed| {
            log::warn!(
                "stream '{}': dropped a part from {label}: {}{}; see /status for totals",
                feed.name,
                reason.as_str(),
                crate::logger::more(suppressed)
            )
        });
    }
}
