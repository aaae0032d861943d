#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! What every long-lived frame response shares on the wire: the part layouts, the
//! never-ending response head, repeats of a still picture and writes bounded in time.

use super::Shared;
use crate::multipart::BOUNDARY;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// If no new frame arrives for this long, the current one is sent again, so a still scene or a
/// paused source stays painted and proxies do not time the connection out.
pub const REPEAT_AFTER: Duration = Duration::from_secs(1);

/// How parts are laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Each part with `Content-Length` and `X-Timestamp`, and the next boundary line right
    /// after the frame. For programs that need a length.
    Framed,
    /// Right after each frame, the *next* part's whole header block (boundary line and
    /// `Content-Type`). Chromium paints a part only once the next part's header block has
    /// arrived; this layout lets it paint at once instead of one frame interval later.
    Advance,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Framed => "framed",
            Layout::Advance => "advance",
        }
    }

    /// Browsers (`User-Agent: Mozilla/…`) get `Advance`, everything else `Framed`;
    /// `advance` (`?advance_headers=1|0`) overrides.
    pub fn choose(user_agent: &str, advance: Option<bool>) -> Layout {
        match advance {
            Some(true) => Layout::Advance,
            Some(false) => Layout::Framed,
            None if user_agent.starts_with("Mozilla/") => Layout::Advance,
            None => Layout::Framed,
        }
    }
}

/// The head of a never-ending `multipart/x-mixed-replace` response.
pub(super) fn multipart_head(http10: bool, shared: &Shared) -> String {
    let content_type = format!("multipart/x-mixed-replace;boundary={BOUNDARY}");
    super::respond::stream_head(http10, &content_type, &[], shared)
}

pub(super) fn describe_write_error(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "could not take a frame within --send-timeout {} s; disconnected",
            timeout.as_secs_f64()
        ),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => "client closed".into(),
        _ => format!("write failed: {e}"),
    }
}

/// The answer to a HEAD of a frame stream: the head a GET would get, and nothing started for
/// it (no viewer listed, no transcoder leased, no on-demand camera woken).
pub(super) fn head_only(rq: super::conn::Request, head: &[u8], shared: &Shared) {
    let mut conn = rq.into_conn();
    let deadline = Instant::now() + shared.cfg.send_timeout;
    // A client gone before its head is nothing to report.
    let _ = write_all_by(&mut conn, head, deadline).and_then(|_| conn.flush());
}

/// `write_all`, but giving up once `deadline` has passed. The socket's `SO_SNDTIMEO` bounds
/// each single write; this bounds the whole frame, so a client that drains a few bytes now and
/// then cannot keep its thread forever.
pub fn write_all_by(w: &mut dyn Write, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if !buf.is_empty() && Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_choice() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0";
        assert_eq!(Layout::choose(chrome, None), Layout::Advance);
        assert_eq!(Layout::choose(chrome, Some(false)), Layout::Framed);
        assert_eq!(Layout::choose("curl/8.0", None), Layout::Framed);
        assert_eq!(Layout::choose("curl/8.0", Some(true)), Layout::Advance);
        assert_eq!(Layout::choose("", None), Layout::Framed);
    }

    #[test]
    fn write_all_by_gives_up_after_the_deadline() {
        struct Trickle(usize);
        impl Write for Trickle {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                std::thread::sleep(Duration::from_millis(5));
                Ok(b.len().min(1))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut t = Trickle(0);
        let r = write_all_by(
            &mut t,
            &[0; 1000],
            Instant::now() + Duration::from_millis(30),
        );
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(t.0 < 20);
    }
}
