//! Sources: where frames come from. Each source owns its threads and its I/O, runs the bytes
//! through the sans-IO [`Parser`](crate::parser::Parser), and publishes frames to its
//! [`Stream`]. Nothing flows back: sources never see clients.
//!
//! Every source thread is named `src-…` and spawned with [`SOURCE_STACK`]; a source has at most
//! two threads (a listener and the reader of the current upstream, briefly two readers while a
//! new upstream replaces the old one).

pub mod stdin;
pub mod tcp_listen;
pub mod testsrc;

use crate::parser::{DropReason, Event, Parser, Stats};
use crate::stream::Stream;
use crossbeam_channel::Receiver;
use std::io::{self, Read};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stack for source threads: they hold a 64 KiB read buffer on the heap and call the parser
/// and the JPEG encoder, nothing recursive.
pub const SOURCE_STACK: usize = 256 * 1024;

/// Bytes asked of the kernel per read. Big enough to take a whole small frame in one call.
const READ_CHUNK: usize = 64 * 1024;

/// A parsed `--source` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Built-in moving test pattern.
    TestSrc,
    /// MJPEG on standard input.
    Stdin,
    /// Listen on an address; the upstream connects to us (gstreamer `tcpclientsink`).
    TcpListen(String),
}

impl SourceSpec {
    pub fn parse(spec: &str) -> Result<SourceSpec, String> {
        match spec {
            "testsrc" => return Ok(SourceSpec::TestSrc),
            "stdin" | "-" => return Ok(SourceSpec::Stdin),
            _ => {}
        }
        if let Some(addr) = spec.strip_prefix("tcp-listen:") {
            if addr.is_empty() {
                return Err("tcp-listen needs an address, e.g. tcp-listen:127.0.0.1:9999".into());
            }
            // A bare port means loopback: the safe default for an unauthenticated input.
            let addr = if addr.parse::<u16>().is_ok() {
                format!("127.0.0.1:{addr}")
            } else {
                addr.to_string()
            };
            if std::net::ToSocketAddrs::to_socket_addrs(&addr.as_str()).is_err() {
                return Err(format!(
                    "'{addr}' is not an address to listen on (HOST:PORT)"
                ));
            }
            return Ok(SourceSpec::TcpListen(addr));
        }
        Err(format!(
            "unknown source '{spec}': expected testsrc, stdin (or -), or tcp-listen:HOST:PORT"
        ))
    }
}

/// Settings every source needs.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub max_frame_bytes: usize,
    /// For `testsrc`.
    pub fps: f64,
    pub width: u16,
    pub height: u16,
}

/// Starts the source of `stream`. Returns what should be printed for the user (e.g. the
/// address actually bound), or an error the caller reports before exiting.
pub fn start(
    spec: &SourceSpec,
    stream: Arc<Stream>,
    cfg: &SourceConfig,
    shutdown: Receiver<()>,
) -> io::Result<Option<String>> {
    match spec {
        SourceSpec::TestSrc => testsrc::start(stream, cfg, shutdown).map(|_| None),
        SourceSpec::Stdin => stdin::start(stream, cfg).map(|_| None),
        SourceSpec::TcpListen(addr) => tcp_listen::start(stream, addr, cfg).map(Some),
    }
}

/// Feeds one upstream connection's bytes through a parser into the stream.
pub struct Pump {
    stream: Arc<Stream>,
    parser: Parser,
    reported: Stats,
    /// Where the upstream is, for log lines.
    label: String,
    drops: DropLog,
    format_logged: bool,
}

impl Pump {
    pub fn new(stream: Arc<Stream>, max_frame_bytes: usize, label: String) -> Pump {
        Pump {
            stream,
            parser: Parser::new(max_frame_bytes),
            reported: Stats::default(),
            label,
            drops: DropLog::default(),
            format_logged: false,
        }
    }

    /// Reads until end of stream or error; returns `Ok` on a clean end of stream.
    pub fn run(&mut self, reader: &mut dyn Read) -> io::Result<()> {
        // Owned by this pump, freed with it: the only per-upstream buffer besides the parser's.
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.feed(&buf[..n]);
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.stream
            .source
            .bytes_in
            .fetch_add(bytes.len() as u64, Relaxed);
        let stream = &self.stream;
        let drops = &mut self.drops;
        let label = &self.label;
        let mut published = false;
        self.parser.push(bytes, &mut |event| match event {
            Event::Frame(jpeg) => {
                stream.publish(jpeg);
                published = true;
            }
            Event::Dropped(reason) => drops.note(stream, label, reason),
        });
        if published && !self.format_logged {
            self.format_logged = true;
            let format = match self.parser.format() {
                crate::parser::Format::Multipart { boundary } => {
                    format!("multipart boundary={boundary}")
                }
                crate::parser::Format::RawJpeg => "raw JPEG".to_string(),
                crate::parser::Format::Unknown => "unknown".to_string(),
            };
            log::info!(
                "stream '{}': first frame from {} ({format})",
                stream.name,
                label
            );
            stream.set_format(format);
        }
        self.sync_stats();
    }

    /// Adds what the parser counted since the last call to the stream's totals.
    fn sync_stats(&mut self) {
        let now = self.parser.stats();
        let src = &self.stream.source;
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
        self.reported = now;
    }

    /// Frames this pump has produced; zero after a connection that sent bytes means the
    /// upstream is not sending MJPEG at all.
    pub fn frames(&self) -> u64 {
        self.parser.stats().frames
    }
}

/// Logs dropped parts without flooding: the first drop at once, then at most one summary line
/// every ten seconds while drops continue.
#[derive(Debug, Default)]
struct DropLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl DropLog {
    fn note(&mut self, stream: &Stream, label: &str, reason: DropReason) {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Duration::from_secs(10) => self.suppressed += 1,
            _ => {
                let more = if self.suppressed > 0 {
                    format!(" ({} more dropped in the last 10 s)", self.suppressed)
                } else {
                    String::new()
                };
                log::warn!(
                    "stream '{}': dropped a part from {label}: {}{more}; see /status for totals",
                    stream.name,
                    reason.as_str()
                );
                self.last = Some(now);
                self.suppressed = 0;
            }
        }
    }
}

/// Spawns a named source thread with the small source stack.
pub fn spawn_source_thread(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(SOURCE_STACK)
        .spawn(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(SourceSpec::parse("testsrc"), Ok(SourceSpec::TestSrc));
        assert_eq!(SourceSpec::parse("-"), Ok(SourceSpec::Stdin));
        assert_eq!(
            SourceSpec::parse("tcp-listen:9999"),
            Ok(SourceSpec::TcpListen("127.0.0.1:9999".into()))
        );
        assert_eq!(
            SourceSpec::parse("tcp-listen:0.0.0.0:5000"),
            Ok(SourceSpec::TcpListen("0.0.0.0:5000".into()))
        );
        assert!(SourceSpec::parse("tcp-listen:").is_err());
        assert!(SourceSpec::parse("tcp-listen:nope").is_err());
        assert!(SourceSpec::parse("rtsp://x").is_err());
    }
}
