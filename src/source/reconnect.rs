//! The reconnect loop shared by every source that dials out: `tcp:`, `unix:`, `http://` and
//! `exec:`.
//!
//! Cameras drop and come back; a relay that gives up (or, worse, hangs every later viewer after
//! one failed connection, as some proxies do) turns a blip into an outage. So: connect, pump
//! frames until the upstream ends or falls silent for `--source-timeout`, wait a backoff
//! (0.5 s doubling to 10 s, back to 0.5 s after an upstream that delivered a frame), and try
//! again, until shutdown. Viewers stay connected throughout; the no-signal watchdog
//! ([`crate::nosignal`]) tells them why the picture stopped.

use super::{spawn_source_thread, wait_while_paused, Pause, Pauses, Pump, SourceConfig};
use crate::feed::{SourceError, SourceFeed, SourceState};
use crate::parser::Parser;
use crate::shutdown::Shutdown;
use std::io::{self, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First wait after a failure.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest wait between attempts: a camera that comes back is picked up within this.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Time allowed for a TCP connect to one address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An open upstream: bytes to read and, for logs and `/status`, where they come from.
pub struct Upstream {
    pub reader: Box<dyn Read + Send>,
    pub peer: String,
    /// Multipart boundary already known from the transport (an HTTP `Content-Type`).
    pub boundary: Option<String>,
}

/// Exponential backoff between connection attempts.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt; doubles the one after, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        d
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// What each attempt does, for the words of the log: connect to an upstream (and reconnect),
/// or start a command (and restart it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Connect,
    Command,
}

/// Starts the source thread: `connect` is called for every attempt, on that thread.
/// `what` names the upstream in log lines (passwords already redacted).
pub fn start(
    feed: Arc<SourceFeed>,
    cfg: &SourceConfig,
    shutdown: Shutdown,
    (what, attempt): (String, Attempt),
    connect: impl FnMut() -> Result<Upstream, String> + Send + 'static,
) -> io::Result<()> {
    let (max_frame, timeout) = (cfg.max_frame_bytes, cfg.source_timeout);
    let pauses = cfg.pauses.clone();
    let name = format!("src-{}-connect", feed.name);
    spawn_source_thread(name, move || {
        let ctx = Loop {
            feed: &feed,
            max_frame,
            timeout,
            shutdown: &shutdown,
            what: &what,
            attempt,
            pauses,
        };
        run(&ctx, connect)
    })?;
    Ok(())
}

/// What the loop needs besides the way to connect.
struct Loop<'a> {
    feed: &'a Arc<SourceFeed>,
    max_frame: usize,
    timeout: Duration,
    shutdown: &'a Shutdown,
    what: &'a str,
    attempt: Attempt,
    /// When not to be connected: a fallback not needed now, nobody watching (`--on-demand`).
    pauses: Pauses,
}

fn run(ctx: &Loop<'_>, mut connect: impl FnMut() -> Result<Upstream, String>) {
    let (feed, shutdown, what) = (ctx.feed, ctx.shutdown, ctx.what);
    let mut backoff = Backoff::default();
    // One WARN when the source goes down, one INFO when frames flow again, nothing in between
    // at info level: a camera that is off for an hour costs two lines, not 360. An attempt
    // that connects (or starts a command) but delivers no frame is a failed attempt too.
    let mut outage = Outage::default();
    // Whether the source delivered a frame since it (re)started: a failure after that is a
    // loss (`lost`), before it a source that is `failing` (it never came this time).
    let mut delivered = false;
    // A command is started and restarted; everything else is connected to and reconnected.
    let command = ctx.attempt == Attempt::Command;
    let (first, again) = if command {
        ("starting", "restarting")
    } else {
        ("connecting to", "reconnecting")
    };
    if ctx.pauses.now() == Some(Pause::Idle) {
        log::info!(
            "stream '{}': on demand: {what} is {} when someone watches",
            feed.name,
            if command { "started" } else { "connected to" }
        );
    } else {
        log::info!("stream '{}': {first} {what}", feed.name);
    }
    loop {
        // Disconnected while a preferred source is up (a fallback) or nobody watches.
        if wait_while_paused(&ctx.pauses, feed, shutdown, SourceState::Connecting) {
            return;
        }
        let failure = match connect() {
            Ok(up) => match pump_one(ctx, up, &outage) {
                Ended::Stopping => return,
                Ended::Paused => {
                    let why = match ctx.pauses.now() {
                        Some(Pause::Idle) => "nobody has watched for the --on-demand linger",
                        _ => "a preferred source is up",
                    };
                    let done = if command { "stopped" } else { "disconnected" };
                    log::info!("stream '{}': {what} {done}: {why}", feed.name);
                    backoff.reset();
                    outage = Outage::default();
                    delivered = false;
                    continue;
                }
                Ended::Lost(reason, lasted) => {
                    delivered = true;
                    backoff.reset();
                    outage = Outage::default();
                    let delay = backoff.next_delay();
                    log::warn!(
                        "stream '{}': lost {what} after {:.1} s: {reason}; {again} in {:.1} s \
                         (then every {} s at most, logged again when it is back)",
                        feed.name,
                        lasted.as_secs_f64(),
                        delay.as_secs_f64(),
                        BACKOFF_CAP.as_secs()
                    );
                    outage.begin(reason.to_string());
                    feed.set_error(reason);
                    feed.set_state(SourceState::Lost, None);
                    if shutdown.sleep(delay) {
                        return;
                    }
                    continue;
                }
                Ended::Failed(e) => e,
            },
            Err(e) => e.into(),
        };
        if shutdown.is_stopping() {
            return;
        }
        let delay = backoff.next_delay();
        if outage.failed(&failure.to_string()) {
            log::warn!(
                "stream '{}': cannot get frames from {what}: {failure}; retrying in {:.1} s \
                 (then every {} s at most; repeats of this error are logged at debug level)",
                feed.name,
                delay.as_secs_f64(),
                BACKOFF_CAP.as_secs()
            );
        } else {
            log::debug!(
                "stream '{}': cannot get frames from {what}: {failure} (attempt {})",
                feed.name,
                outage.failed_attempts
            );
        }
        feed.set_error(failure);
        let state = if delivered {
            SourceState::Lost
        } else {
            SourceState::Failing
        };
        feed.set_state(state, None);
        if shutdown.sleep(delay) {
            return;
        }
    }
}

/// How one connection (or one run of a command) ended.
enum Ended {
    /// The relay is stopping, or this stream was ended: not a loss.
    Stopping,
    /// A pause hung up: a preferred source is up, or nobody watches.
    Paused,
    /// It delivered frames, then ended: why, and after how long.
    Lost(SourceError, Duration),
    /// It ended without one whole frame.
    Failed(SourceError),
}

/// Runs one upstream's bytes through the parser into the feed until it ends, falls silent
/// for `--source-timeout`, or is hung up on.
fn pump_one(ctx: &Loop<'_>, up: Upstream, outage: &Outage) -> Ended {
    let (feed, what) = (ctx.feed, ctx.what);
    feed.stats.connections.fetch_add(1, Relaxed);
    feed.set_peer(up.peer.clone());
    log::debug!("stream '{}': connected to {what} ({})", feed.name, up.peer);
    let started = Instant::now();
    let parser = match &up.boundary {
        Some(b) => Parser::with_boundary(ctx.max_frame, b),
        None => Parser::new(ctx.max_frame),
    };
    let mut pump = Pump::with_parser(feed.clone(), parser, what.to_string());
    pump.first_frame_note = outage.back_note();
    // Hang up when a pause says so, or when this stream is ended (SIGHUP took it out of the
    // configuration) while its upstream still sends.
    let ending = ctx.shutdown.clone();
    pump.stop_when = Some(match ctx.pauses.hang_up_rule() {
        Some(mut rule) => Box::new(move || ending.is_stopping() || rule()),
        None => Box::new(move || ending.is_stopping()),
    });
    let mut reader = up.reader;
    let result = pump.run_until_silent(&mut reader, Some(ctx.timeout));
    drop(reader); // closes the socket, or stops the command's process group
    if ctx.shutdown.is_stopping() {
        return Ended::Stopping;
    }
    if pump.stopped() {
        return Ended::Paused;
    }
    let reason = match result {
        Ok(()) if ctx.attempt == Attempt::Command => {
            SourceError::from("its output ended".to_string())
        }
        Ok(()) => "closed the connection".to_string().into(),
        Err(e) => SourceError::from_io(&e),
    };
    if pump.frames() > 0 {
        return Ended::Lost(reason, started.elapsed());
    }
    if pump.bytes() == 0 {
        return Ended::Failed(reason);
    }
    Ended::Failed(SourceError {
        reason: format!(
            "{} after {} bytes without one whole JPEG; is it sending MJPEG (multipart or raw \
             JPEG)?",
            reason.reason,
            pump.bytes()
        ),
        said: reason.said,
    })
}

/// The current outage of a source, for logging it once at each end.
#[derive(Debug, Default)]
struct Outage {
    /// When frames stopped (or, at start-up, when the first attempt failed).
    since: Option<Instant>,
    failed_attempts: u64,
    /// Failures already logged at warn level in this outage; the same one again goes to
    /// debug. At most [`MAX_DISTINCT`], so errors that alternate are logged once each.
    logged: Vec<String>,
}

/// Distinct failures logged at warn level per outage.
const MAX_DISTINCT: usize = 8;

impl Outage {
    fn begin(&mut self, reason: String) {
        self.since = Some(Instant::now());
        self.logged.push(reason);
    }

    /// Counts a failed attempt; true if it should be logged at warn level (a new failure).
    fn failed(&mut self, failure: &str) -> bool {
        self.since.get_or_insert_with(Instant::now);
        self.failed_attempts += 1;
        if self.logged.len() >= MAX_DISTINCT || self.logged.iter().any(|f| f == failure) {
            return false;
        }
        self.logged.push(failure.to_string());
        true
    }

    /// Appended to the first-frame log line of the connection that ends the outage.
    fn back_note(&self) -> String {
        match self.since {
            Some(t) => format!(
                "; back after {:.1} s and {} failed attempt(s)",
                t.elapsed().as_secs_f64(),
                self.failed_attempts
            ),
            None => String::new(),
        }
    }
}

/// `tcp:HOST:PORT`. The name is resolved on every attempt: a camera's address may change.
pub fn connect_tcp(addr: &str, silence: Duration) -> Result<Upstream, String> {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    let mut last = format!("{addr} resolved to no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                // A read that waits longer than this means the upstream went silent.
                s.set_read_timeout(Some(silence))
                    .map_err(|e| e.to_string())?;
                return Ok(Upstream {
                    reader: Box::new(s),
                    peer: a.to_string(),
                    boundary: None,
                });
            }
            // The log line names the address already; repeat it only when the name
            // resolved to another (or to several).
            Err(e) if a.to_string() == addr => last = crate::logger::describe_io(&e),
            Err(e) => last = format!("{a}: {}", crate::logger::describe_io(&e)),
        }
    }
    Err(last)
}

/// `unix:PATH`, within [`CONNECT_TIMEOUT`]: a listener whose backlog is full (a wedged camera
/// daemon) makes a blocking `connect` wait forever, and with it the source thread.
pub fn connect_unix(path: &Path, silence: Duration) -> Result<Upstream, String> {
    let s = connect_unix_by(path, Instant::now() + CONNECT_TIMEOUT)
        .map_err(|e| crate::logger::describe_io(&e))?;
    s.set_read_timeout(Some(silence))
        .map_err(|e| e.to_string())?;
    Ok(Upstream {
        reader: Box::new(s),
        peer: path.display().to_string(),
        boundary: None,
    })
}

/// A non-blocking `connect`: on a Unix socket it fails at once with `EAGAIN` while the
/// listener's backlog is full, so it is retried every 50 ms until `deadline`.
fn connect_unix_by(path: &Path, deadline: Instant) -> io::Result<UnixStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: an all-zero sockaddr_un is valid; the path is copied in below, bounds checked.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path too long for a Unix socket",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    loop {
        // SAFETY: connect with a valid sockaddr_un of the given length on our socket.
        let rc = unsafe {
            libc::connect(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            let s = UnixStream::from(fd);
            s.set_nonblocking(false)?;
            return Ok(s);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connect timed out after {} s (the listener accepts no connection)",
                    CONNECT_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let got: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}
