//! Sources: where frames come from. Each source owns its threads and its I/O, runs the bytes
//! through the sans-IO [`Parser`](crate::parser::Parser), and publishes frames to its
//! [`Stream`]. Nothing flows back: sources never see clients.
//!
//! Every source thread is named `src-…` and spawned with [`SOURCE_STACK`]. A source has one
//! thread, with two exceptions: `tcp-listen` has a listener plus the reader of the current
//! upstream (briefly two readers while a new upstream replaces the old one), and `exec` adds a
//! thread that forwards the child's stderr to our log.
//!
//! Sources that dial out (`tcp:`, `unix:`, `http://`, `exec:`) share one reconnect loop
//! ([`reconnect`]): connect, pump until the upstream ends or falls silent for
//! `--source-timeout`, wait a backoff, try again. Viewers never notice more than a pause.

pub mod exec;
pub mod file;
pub mod http_pull;
pub mod reconnect;
pub mod stdin;
pub mod tcp_listen;
pub mod testsrc;

use crate::hub::{SourceState, Stream};
use crate::parser::{DropReason, Event, Parser, Stats};
use crate::shutdown::Shutdown;
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
    /// Connect to `HOST:PORT` (gstreamer `tcpserversink`, any TCP MJPEG server).
    Tcp(String),
    /// Connect to a Unix stream socket.
    Unix(std::path::PathBuf),
    /// Pull `multipart/x-mixed-replace` (or a raw MJPEG body) over HTTP.
    Http(String),
    /// Run `sh -c COMMAND` and read its stdout.
    Exec(String),
    /// Replay a recorded file, or a directory of `.jpg` files, at `--fps`, looping.
    File(std::path::PathBuf),
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
        if let Some(addr) = spec.strip_prefix("tcp:") {
            return match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(SourceSpec::Tcp(addr.to_string()))
                }
                _ => Err(format!(
                    "'{addr}' is not HOST:PORT to connect to, e.g. tcp:127.0.0.1:5000"
                )),
            };
        }
        if let Some(path) = spec.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix needs a socket path, e.g. unix:/run/camera.sock".into());
            }
            return Ok(SourceSpec::Unix(path.into()));
        }
        if spec.starts_with("http://") {
            return http_pull::check_url(spec).map(|()| SourceSpec::Http(spec.to_string()));
        }
        if spec.starts_with("https://") {
            return Err(format!(
                "'{}': https is not supported (this build has no TLS); use http://, or put a \
                 TLS-terminating proxy such as stunnel in front",
                redact(spec)
            ));
        }
        if let Some(cmd) = spec.strip_prefix("exec:") {
            if cmd.trim().is_empty() {
                return Err("exec needs a command, e.g. exec:ffmpeg -i ... -f mjpeg -".into());
            }
            return Ok(SourceSpec::Exec(cmd.to_string()));
        }
        if let Some(path) = spec.strip_prefix("file:") {
            let p = std::path::Path::new(path);
            if !p.exists() {
                return Err(format!("'{path}' does not exist"));
            }
            return Ok(SourceSpec::File(p.into()));
        }
        // The two most common cameras, named the way people name them: say what works.
        if spec.starts_with("/dev/video") {
            return Err(format!(
                "'{spec}' is a camera device, which the relay does not open itself; let ffmpeg \
                 read it: --source 'exec:ffmpeg -loglevel error -f v4l2 -input_format mjpeg \
                 -i {spec} -c:v copy -f mjpeg -' (for a camera without MJPEG output, replace \
                 -input_format mjpeg and -c:v copy with -c:v mjpeg -q:v 5)"
            ));
        }
        if let Some(scheme) = ["rtsp://", "rtsps://", "rtmp://"]
            .iter()
            .find(|s| spec.starts_with(**s))
        {
            let shown = redact(spec);
            return Err(format!(
                "'{shown}': {} is a video stream the relay does not decode itself; let ffmpeg \
                 turn it into MJPEG: --source 'exec:ffmpeg -loglevel error -rtsp_transport \
                 tcp -i {spec_text} -c:v mjpeg -q:v 5 -f mjpeg -' (an IP camera often also \
                 has an MJPEG URL of its own, e.g. http://CAMERA/video.cgi)",
                scheme.trim_end_matches("://"),
                spec_text = if scheme.starts_with("rtsp") {
                    shown.as_str()
                } else {
                    "URL"
                },
            ));
        }
        Err(format!(
            "unknown source '{}': expected testsrc, stdin (or -), tcp-listen:HOST:PORT, \
             tcp:HOST:PORT, unix:PATH, http://URL, exec:COMMAND or file:PATH",
            redact(spec)
        ))
    }
}

/// Query parameter names whose values are secrets (matched case-insensitively, also as the
/// end of a longer name such as `api_key` or `access_token`), as cheap IP cameras put them in
/// URLs: `?user=admin&pwd=…`.
const SECRET_PARAMS: &[&str] = &[
    "pass",
    "password",
    "passwd",
    "pwd",
    "pw",
    "token",
    "key",
    "auth",
    "secret",
    "sig",
    "signature",
    "credential",
    "credentials",
    "apikey",
];

/// `spec` with every secret replaced by `***`, for logs and `/status`: the password of every
/// URL in it (`scheme://user:pass@host`, also inside an `exec:` command line), the value of
/// every query parameter named like a secret (`?pwd=…`, `&token=…`), and in command lines the
/// credentials of `-u USER:PASS` (curl), of flags named like a secret (`--password X`,
/// `--http-password=X`, `-key X`) and of an `Authorization:` header. Linear in the length.
pub fn redact(spec: &str) -> String {
    redact_args(&redact_authorization(&redact_urls(spec)))
}

/// Whether a flag or parameter name means a secret: one of [`SECRET_PARAMS`], or ending in
/// one after `-` or `_` (`http-password`, `api_key`).
fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !lower.is_empty()
        && (SECRET_PARAMS.contains(&lower.as_str())
            || lower
                .rsplit(['-', '_'])
                .next()
                .is_some_and(|last| last != lower && SECRET_PARAMS.contains(&last)))
}

/// The credentials after every `Authorization:` (a header given to ffmpeg's `-headers` or
/// curl's `-H`): the scheme word stays, what follows it up to a quote or line end goes.
fn redact_authorization(s: &str) -> String {
    const NAME: &str = "authorization:";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.to_ascii_lowercase().find(NAME) {
        let (head, tail) = rest.split_at(i + NAME.len());
        out.push_str(head);
        let value_end = tail
            .find(['\'', '"', '\r', '\n', '\\'])
            .unwrap_or(tail.len());
        let (value, after) = tail.split_at(value_end);
        let trimmed = value.trim_start();
        out.push_str(value.get(..value.len() - trimmed.len()).unwrap_or(""));
        match trimmed.split_once(' ') {
            Some((scheme, _)) => {
                out.push_str(scheme);
                out.push_str(" ***");
            }
            None if !trimmed.is_empty() => out.push_str("***"),
            None => {}
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Command-line flags that carry secrets: `-u USER:PASS` (and curl's `-su`), `--user`,
/// `--password X`, `--http-password=X`. Words are separated by white space; quoting is not
/// interpreted, so a quoted secret with spaces in it keeps its later words.
fn redact_args(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // What the previous word asked of this one.
    enum Next {
        Keep,
        User,
        Secret,
    }
    let mut next = Next::Keep;
    let mut rest = s;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(rest.get(..ws).unwrap_or(""));
        rest = rest.get(ws..).unwrap_or("");
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        rest = after;
        let quote = word
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .map(String::from)
            .unwrap_or_default();
        match std::mem::replace(&mut next, Next::Keep) {
            Next::User => {
                let user = word.split(':').next().unwrap_or("");
                out.push_str(user);
                if word.contains(':') {
                    out.push_str(":***");
                    out.push_str(&quote);
                }
                continue;
            }
            Next::Secret => {
                out.push_str(&quote);
                out.push_str("***");
                out.push_str(&quote);
                continue;
            }
            Next::Keep => {}
        }
        let bare = word.trim_start_matches(['\'', '"']);
        if let Some(flag) = bare.strip_prefix('-') {
            let long = flag.strip_prefix('-');
            let name = long.unwrap_or(flag);
            if let Some((n, _)) = name.split_once('=') {
                if secret_name(n) {
                    let keep = word.len() - bare.len() + 1 + usize::from(long.is_some()) + n.len();
                    out.push_str(word.get(..keep).unwrap_or(word));
                    out.push_str("=***");
                    continue;
                }
            } else if matches!(name, "user" | "proxy-user")
                || (long.is_none()
                    && name.ends_with('u')
                    && name.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                next = Next::User;
            } else if secret_name(name) {
                next = Next::Secret;
            }
        }
        out.push_str(word);
    }
    out
}

/// URL passwords and secret query parameters.
fn redact_urls(spec: &str) -> String {
    let mut out = String::with_capacity(spec.len());
    let mut rest = spec;
    // URLs: userinfo between "://" and the next "@" before any "/", space or quote.
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(at) => {
                let user = authority
                    .get(..at)
                    .unwrap_or("")
                    .split(':')
                    .next()
                    .unwrap_or("");
                out.push_str(user);
                out.push_str(":***");
                out.push_str(authority.get(at..).unwrap_or(""));
            }
            None => out.push_str(authority),
        }
        rest = after;
    }
    out.push_str(rest);
    redact_params(&out)
}

/// Replaces the value of each `?name=value` / `&name=value` whose name means a secret.
fn redact_params(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['?', '&', ';']) {
        let (head, tail) = rest.split_at(i + 1);
        out.push_str(head);
        let name_end = tail
            .find(|c: char| c == '=' || c == '&' || c == '?' || c.is_whitespace())
            .unwrap_or(tail.len());
        let (name, after) = tail.split_at(name_end);
        out.push_str(name);
        rest = after;
        if let (true, Some(value)) = (secret_name(name), after.strip_prefix('=')) {
            let end = value
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || c == '\'' || c == '"')
                .unwrap_or(value.len());
            out.push_str("=***");
            rest = value.get(end..).unwrap_or("");
        }
    }
    out.push_str(rest);
    out
}

/// Settings every source needs.
#[derive(Clone)]
pub struct SourceConfig {
    pub max_frame_bytes: usize,
    /// For `testsrc` and `file:`, and how often an `http://` URL that serves single
    /// pictures is polled.
    pub fps: f64,
    pub width: u16,
    pub height: u16,
    /// An upstream that sends no whole frame for this long is dropped and reconnected.
    pub source_timeout: Duration,
    /// When the source may stop: a `--fallback` not needed now, or (`--on-demand`) a stream
    /// nobody watches.
    pub pauses: Pauses,
}

/// Why a source may stop for now, each a predicate its own loop asks every 100 ms or so
/// while paused, and after every read while running.
#[derive(Clone, Default)]
pub struct Pauses {
    /// A `--fallback` while a source before it is up (see [`crate::failover::standby`]).
    pub standby: Option<reconnect::Standby>,
    /// `--on-demand`: the served stream has had nobody watching for LINGER ([`Stream::idle`]).
    pub idle: Option<reconnect::Standby>,
}

/// What a paused source is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    Standby,
    Idle,
}

impl Pauses {
    /// Why the source may stop now, if it may. Nobody watching wins: an unwatched fallback
    /// is idle, whatever the chain says.
    pub fn now(&self) -> Option<Pause> {
        if self.idle.as_ref().is_some_and(|f| f()) {
            Some(Pause::Idle)
        } else if self.standby.as_ref().is_some_and(|f| f()) {
            Some(Pause::Standby)
        } else {
            None
        }
    }
}

/// Starts the source of `stream`, or says why it cannot (the caller reports it and exits).
pub fn start(
    spec: &SourceSpec,
    stream: Arc<Stream>,
    cfg: &SourceConfig,
    shutdown: Shutdown,
) -> io::Result<()> {
    match spec {
        SourceSpec::TestSrc => testsrc::start(stream, cfg, shutdown),
        SourceSpec::Stdin => stdin::start(stream, cfg),
        SourceSpec::TcpListen(addr) => tcp_listen::start(stream, addr, cfg).map(drop),
        SourceSpec::File(path) => file::start(stream, path.clone(), cfg, shutdown),
        SourceSpec::Tcp(addr) => {
            let (addr, timeout) = (addr.clone(), cfg.source_timeout);
            let what = format!("tcp {addr}");
            reconnect::start(stream, cfg, shutdown, what, move || {
                reconnect::connect_tcp(&addr, timeout)
            })
        }
        SourceSpec::Unix(path) => {
            let (path, timeout) = (path.clone(), cfg.source_timeout);
            let what = format!("unix {}", path.display());
            reconnect::start(stream, cfg, shutdown, what, move || {
                reconnect::connect_unix(&path, timeout)
            })
        }
        SourceSpec::Http(url) => {
            let mut client = http_pull::Client::new(&stream.name, url, cfg.source_timeout, cfg.fps);
            let what = redact(url);
            reconnect::start(stream, cfg, shutdown, what, move || client.connect())
        }
        SourceSpec::Exec(cmd) => {
            let runner = exec::Runner::new(&stream.name, cmd, cfg.source_timeout, shutdown.clone());
            let what = format!("command '{}'", redact(cmd));
            reconnect::start(stream, cfg, shutdown, what, move || runner.spawn())
        }
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
    ready: Vec<Vec<u8>>,
    /// The upstream (another relay) is sending its NO SIGNAL picture: the camera behind it is
    /// down, so this source is down too, though its connection is alive (see [`Pump::feed`]).
    upstream_dark: bool,
    /// A real frame has marked the stream live on this connection.
    marked_live: bool,
}

impl Pump {
    pub fn new(stream: Arc<Stream>, max_frame_bytes: usize, label: String) -> Pump {
        Pump::with_parser(stream, Parser::new(max_frame_bytes), label)
    }

    /// A pump whose parser was made by the caller (e.g. with a boundary from HTTP headers).
    pub fn with_parser(stream: Arc<Stream>, parser: Parser, label: String) -> Pump {
        Pump {
            stream,
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
        }
    }

    /// Reads until end of stream or error; returns `Ok` on a clean end of stream.
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
            self.stream.source.truncated.fetch_add(1, Relaxed);
            log::debug!(
                "stream '{}': {} ended mid-frame ({} bytes dropped)",
                self.stream.name,
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
        self.stream
            .source
            .bytes_in
            .fetch_add(bytes.len() as u64, Relaxed);
        let stream = &self.stream;
        let drops = &mut self.drops;
        let label = &self.label;
        let ready = &mut self.ready;
        self.parser.push(bytes, &mut |event| match event {
            Event::Frame(jpeg) => ready.push(jpeg),
            Event::Dropped(reason) => drops.note(stream, label, reason),
        });
        self.sync_stats();
        if !self.ready.is_empty() && !self.format_logged {
            self.format_logged = true;
            let format = self.parser.format().to_string();
            log::info!(
                "stream '{}': first frame from {} ({format}){}",
                self.stream.name,
                self.label,
                self.first_frame_note
            );
            self.stream.set_format(format);
        }
        let mut ready = std::mem::take(&mut self.ready);
        for jpeg in ready.drain(..) {
            // An upstream relay whose own camera is down sends its NO SIGNAL picture about
            // once a second. Those are not frames of this source: passing them on as live would
            // keep an edge on a dead camera forever (its failover never fires, `/snapshot`
            // serves the picture of an error). So the source counts as down while they come,
            // with the connection kept open, so the camera's return is seen at once.
            let dark = crate::nosignal::is_no_signal(&jpeg);
            if dark {
                self.stream.source.no_signal_parts.fetch_add(1, Relaxed);
            }
            if dark != self.upstream_dark {
                self.upstream_dark = dark;
                self.dark_changed(dark);
            }
            if dark {
                continue;
            }
            if !self.marked_live {
                self.marked_live = true;
                self.stream.set_live();
            }
            self.stream.publish(&jpeg);
        }
        self.ready = ready;
    }

    /// The upstream started or stopped sending NO SIGNAL pictures.
    fn dark_changed(&mut self, dark: bool) {
        let name = &self.stream.name;
        if dark {
            let why = format!(
                "{} sends a NO SIGNAL picture: the camera behind it is down",
                self.label
            );
            log::warn!("stream '{name}': {why}; this source counts as lost until it has a picture");
            self.stream.set_error(why);
            let peer = self.stream.source_info().peer;
            self.stream.set_state(SourceState::Lost, peer);
            self.marked_live = false;
        } else {
            log::info!("stream '{name}': {} has a picture again", self.label);
        }
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
        if now.boundary_changes > self.reported.boundary_changes {
            log::warn!(
                "stream '{}': {} changed its multipart boundary mid-stream; following it",
                self.stream.name,
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
    fn note(&mut self, stream: &Stream, label: &str, reason: DropReason) {
        self.0.note(|suppressed| {
            log::warn!(
                "stream '{}': dropped a part from {label}: {}{}; see /status for totals",
                stream.name,
                reason.as_str(),
                crate::logger::more(suppressed)
            )
        });
    }
}

/// For a source that makes its own frames (`testsrc`, `file:`): while it is paused (a
/// `--fallback` not needed, or `--on-demand` with nobody watching) it makes none (encoding a
/// test pattern at 15 fps for nobody costs a Pi a good share of a core). Returns at once when
/// not paused; `true` means shutdown.
/// `resume` is the state once it goes on: `live` for a source that makes frames at once,
/// `connecting` for one that dials (which then also shows a STARTING picture to whoever came).
pub fn wait_while_paused(
    pauses: &Pauses,
    stream: &Stream,
    shutdown: &Shutdown,
    resume: SourceState,
) -> bool {
    let Some(first) = pauses.now() else {
        return false;
    };
    let info = stream.source_info();
    let mut shown = None;
    let mut pause = Some(first);
    while let Some(p) = pause {
        if shown != Some(p) {
            shown = Some(p);
            let state = match p {
                Pause::Standby => SourceState::Standby,
                Pause::Idle => SourceState::Idle,
            };
            stream.set_state(state, info.peer.clone());
            log::debug!("stream '{}': {} (paused)", stream.name, state.as_str());
        }
        if shutdown.sleep(std::time::Duration::from_millis(100)) {
            return true;
        }
        pause = pauses.now();
    }
    if shown == Some(Pause::Idle) {
        stream.demand.starts.fetch_add(1, Relaxed);
        if resume == SourceState::Connecting {
            stream.demand.starting.store(true, Relaxed);
        }
        log::info!(
            "stream '{}': someone watches: starting the source",
            stream.name
        );
    }
    let peer = (resume == SourceState::Live).then_some(info.peer).flatten();
    stream.set_state(resume, peer);
    false
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
        // Issue 22: the common camera names point at the recipe that works.
        let e = SourceSpec::parse("rtsp://admin:pw@10.0.0.9/live").unwrap_err();
        assert!(
            e.contains("exec:ffmpeg") && e.contains("rtsp://admin:***@10.0.0.9/live"),
            "{e}"
        );
        assert!(!e.contains(":pw@"), "{e}");
        let e = SourceSpec::parse("/dev/video0").unwrap_err();
        assert!(
            e.contains("exec:ffmpeg") && e.contains("-f v4l2") && e.contains("/dev/video0"),
            "{e}"
        );
        assert_eq!(
            SourceSpec::parse("tcp:cam.local:5000"),
            Ok(SourceSpec::Tcp("cam.local:5000".into()))
        );
        assert!(SourceSpec::parse("tcp:5000").is_err());
        assert!(SourceSpec::parse("tcp:host:port").is_err());
        assert_eq!(
            SourceSpec::parse("unix:/run/cam.sock"),
            Ok(SourceSpec::Unix("/run/cam.sock".into()))
        );
        assert!(SourceSpec::parse("unix:").is_err());
        assert_eq!(
            SourceSpec::parse("http://u:p@10.0.0.2:81/video.cgi"),
            Ok(SourceSpec::Http("http://u:p@10.0.0.2:81/video.cgi".into()))
        );
        assert!(SourceSpec::parse("http://").is_err());
        let e = SourceSpec::parse("https://u:secret@cam/x").unwrap_err();
        assert!(e.contains("TLS") && !e.contains("secret"), "{e}");
        assert_eq!(
            SourceSpec::parse("exec:ffmpeg -i x -f mjpeg -"),
            Ok(SourceSpec::Exec("ffmpeg -i x -f mjpeg -".into()))
        );
        assert!(SourceSpec::parse("exec: ").is_err());
        assert!(SourceSpec::parse("file:/no/such/file.mjpeg").is_err());
        assert_eq!(
            SourceSpec::parse("file:/"),
            Ok(SourceSpec::File("/".into()))
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("http://admin:hunter2@cam:81/video?x=1"),
            "http://admin:***@cam:81/video?x=1"
        );
        assert_eq!(redact("http://cam/video"), "http://cam/video");
        assert_eq!(redact("exec:echo a@b"), "exec:echo a@b");
        assert_eq!(redact("http://cam/a@b"), "http://cam/a@b");
        // Issue 13: command lines and credential query parameters.
        assert_eq!(
            redact("exec:ffmpeg -i rtsp://admin:pw@10.0.0.9/s -f mjpeg -"),
            "exec:ffmpeg -i rtsp://admin:***@10.0.0.9/s -f mjpeg -"
        );
        assert_eq!(
            redact("http://cam/snap.cgi?user=admin&pwd=hunter2&res=1"),
            "http://cam/snap.cgi?user=admin&pwd=***&res=1"
        );
        assert_eq!(
            redact("exec:curl 'http://c/v?Password=x1&api_key=k2' -o - | cat"),
            "exec:curl 'http://c/v?Password=***&api_key=***' -o - | cat"
        );
        assert_eq!(
            redact("http://c/v?token=abc#frag"),
            "http://c/v?token=***#frag"
        );
        assert_eq!(
            redact("http://c/v?monkey=1&keyboard=2"),
            "http://c/v?monkey=1&keyboard=2"
        );
        assert_eq!(
            redact("exec:a https://u:p@h/x?sig=s http://v:q@i/"),
            "exec:a https://u:***@h/x?sig=*** http://v:***@i/"
        );
        // Issue 20 item 8: credentials in command-line flags and headers.
        assert_eq!(
            redact("exec:curl -su admin:hunter2 http://cam/video.mjpg"),
            "exec:curl -su admin:*** http://cam/video.mjpg"
        );
        assert_eq!(
            redact("exec:curl --user admin:hunter2 -o - http://c/"),
            "exec:curl --user admin:*** -o - http://c/"
        );
        assert_eq!(
            redact("exec:ffmpeg -headers 'Authorization: Basic YWRtaW46aHVudGVy' -i http://c/ -f mjpeg -"),
            "exec:ffmpeg -headers 'Authorization: Basic ***' -i http://c/ -f mjpeg -"
        );
        assert_eq!(
            redact("exec:wget --http-password=hunter2 --password hunter3 -O - http://c/"),
            "exec:wget --http-password=*** --password *** -O - http://c/"
        );
        assert_eq!(
            redact("exec:cam --api_key=k1 -token t2 --keyint 5 -vf x"),
            "exec:cam --api_key=*** -token *** --keyint 5 -vf x"
        );
        assert_eq!(
            redact("exec:curl -H \"authorization: Bearer abc.def\" http://c/"),
            "exec:curl -H \"authorization: Bearer ***\" http://c/"
        );
        for s in [
            "",
            "://",
            "@",
            "?=",
            "&&==",
            "http://@",
            "a?pwd",
            "a?pwd=",
            "-u",
            "--password",
            "Authorization:",
            "authorization: ",
            "-p=",
            "'",
            "\"-u\" '",
        ] {
            let _ = redact(s);
        }
    }
}
