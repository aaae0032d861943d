//! The reconnect loop shared by every source that dials out: `tcp:`, `unix:`, `http://` and
//! `exec:`.
//!
//! Cameras drop and come back; a relay that gives up (or, worse, hangs every later viewer after
//! one failed connection, as some proxies do) turns a blip into an outage. So: connect, pump
//! frames until the upstream ends or falls silent for `--source-timeout`, wait a backoff
//! (0.5 s doubling to 10 s, back to 0.5 s after an upstream that delivered a frame), and try
//! again, until shutdown. Viewers stay connected throughout; the no-signal watchdog
//! ([`crate::nosignal`]) tells them why the picture stopped.

use super::{spawn_source_thread, Pump, SourceConfig};
use crate::parser::Parser;
use crate::stream::{SourceState, Stream};
use crossbeam_channel::{Receiver, RecvTimeoutError};
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

/// Starts the source thread: `connect` is called for every attempt, on that thread.
/// `what` names the upstream in log lines (passwords already redacted).
pub fn start(
    stream: Arc<Stream>,
    cfg: &SourceConfig,
    shutdown: Receiver<()>,
    what: String,
    connect: impl FnMut() -> Result<Upstream, String> + Send + 'static,
) -> io::Result<()> {
    let (max_frame, timeout) = (cfg.max_frame_bytes, cfg.source_timeout);
    let name = format!("src-{}-connect", stream.name);
    spawn_source_thread(name, move || {
        run(&stream, max_frame, timeout, &shutdown, &what, connect)
    })?;
    Ok(())
}

fn run(
    stream: &Arc<Stream>,
    max_frame: usize,
    timeout: Duration,
    shutdown: &Receiver<()>,
    what: &str,
    mut connect: impl FnMut() -> Result<Upstream, String>,
) {
    let mut backoff = Backoff::default();
    // The last failure logged at warn level; repeats of the same failure go to debug so a
    // camera that is off for an hour costs one line, not 360.
    let mut last_failure = String::new();
    let mut failed_attempts = 0u64;
    let mut lost_at: Option<Instant> = None;
    log::info!("stream '{}': connecting to {what}", stream.name);
    loop {
        match connect() {
            Ok(up) => {
                let connections = stream.source.connections.fetch_add(1, Relaxed) + 1;
                stream.set_state(SourceState::Live, Some(up.peer.clone()));
                match lost_at {
                    Some(t) if connections > 1 => log::info!(
                        "stream '{}': reconnected to {what} ({}) after {:.1} s and {failed_attempts} failed attempts",
                        stream.name,
                        up.peer,
                        t.elapsed().as_secs_f64()
                    ),
                    _ => log::info!(
                        "stream '{}': connected to {what} ({})",
                        stream.name,
                        up.peer
                    ),
                }
                last_failure.clear();
                failed_attempts = 0;
                let started = Instant::now();
                let parser = match &up.boundary {
                    Some(b) => Parser::with_boundary(max_frame, b),
                    None => Parser::new(max_frame),
                };
                let mut pump = Pump::with_parser(stream.clone(), parser, what.to_string());
                let mut reader = up.reader;
                let result = pump.run_until_silent(&mut reader, Some(timeout));
                drop(reader); // closes the socket, or stops the command's process group
                let reason = match result {
                    Ok(()) => "closed the connection".to_string(),
                    Err(e) => e.to_string(),
                };
                if pump.frames() > 0 {
                    backoff.reset();
                }
                let hint = if pump.frames() == 0 {
                    " without sending one whole JPEG; is it sending MJPEG (multipart or raw JPEG)?"
                } else {
                    ""
                };
                let delay = backoff.next_delay();
                log::warn!(
                    "stream '{}': lost {what} after {:.1} s: {reason}{hint}; reconnecting in {:.1} s",
                    stream.name,
                    started.elapsed().as_secs_f64(),
                    delay.as_secs_f64()
                );
                stream.set_state(SourceState::Lost, None);
                lost_at = Some(Instant::now());
                if wait(shutdown, delay) {
                    return;
                }
            }
            Err(e) => {
                failed_attempts += 1;
                let delay = backoff.next_delay();
                if e != last_failure {
                    log::warn!(
                        "stream '{}': cannot connect to {what}: {e}; retrying in {:.1} s \
                         (then every {} s at most; repeats of this error are logged at debug level)",
                        stream.name,
                        delay.as_secs_f64(),
                        BACKOFF_CAP.as_secs()
                    );
                    last_failure = e;
                } else {
                    log::debug!(
                        "stream '{}': cannot connect to {what}: {e} (attempt {failed_attempts})",
                        stream.name
                    );
                }
                if wait(shutdown, delay) {
                    return;
                }
            }
        }
    }
}

/// Sleeps `d` unless shutdown comes first; true means stop.
fn wait(shutdown: &Receiver<()>, d: Duration) -> bool {
    !matches!(shutdown.recv_timeout(d), Err(RecvTimeoutError::Timeout))
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
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

/// `unix:PATH`.
pub fn connect_unix(path: &Path, silence: Duration) -> Result<Upstream, String> {
    let s = UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
    s.set_read_timeout(Some(silence))
        .map_err(|e| e.to_string())?;
    Ok(Upstream {
        reader: Box::new(s),
        peer: path.display().to_string(),
        boundary: None,
    })
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
