#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! Reading one request head: within a deadline in total, within [`MAX_HEAD`] bytes, in time
//! linear in its length however it is chunked; parsed by `httparse`.

use super::conn::{Conn, Method};
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Default for `--header-timeout`: a request head (request line and headers) must arrive
/// within this time in total.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted, request line and headers together.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 64;

/// What went wrong reading a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The client closed (or reset) before a whole head arrived.
    Closed,
    Timeout,
    TooLarge,
    Malformed,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    pub target: String,
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
}

/// Reads one request head from `conn` within `limit` in total and [`MAX_HEAD`] bytes. Bytes after
/// the head (a body, pipelined requests) are not read.
pub fn read_head(conn: &mut Conn, limit: Duration) -> Result<Head, HeadError> {
    let deadline = Instant::now() + limit;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        conn.set_read_timeout(Some(left))
            .map_err(|_| HeadError::Closed)?;
        // Read no further than the head could reach, so a body or a pipelined request stays
        // unread in the socket.
        let want = chunk.len().min(MAX_HEAD + 1 - buf.len());
        let n = match conn.read(chunk.get_mut(..want).unwrap_or_default()) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::Timeout)
            }
            Err(_) => return Err(HeadError::Closed),
        };
        let first = buf.is_empty();
        let scan_from = buf.len().saturating_sub(2);
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        // Parse the first read (a TLS hello or other garbage gets its 400 at once) and then only
        // when a blank line may have arrived: re-parsing the whole head on every read would let
        // a client sending a byte at a time make us parse ~MAX_HEAD²/2 bytes.
        let fresh = buf.get(scan_from..).unwrap_or_default();
        let may_end = memchr::memmem::find(fresh, b"\n\n").is_some()
            || memchr::memmem::find(fresh, b"\n\r\n").is_some();
        if !first && !may_end {
            if buf.len() > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            continue;
        }
        match parse_head(&buf) {
            Ok(Some(head)) => {
                let _ = conn.set_read_timeout(None);
                return Ok(head);
            }
            Ok(None) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `Ok(None)` while the head is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let method = match req.method.unwrap_or("") {
                "GET" => Method::Get,
                "HEAD" => Method::Head,
                "OPTIONS" => Method::Options,
                other => Method::Other(other.to_string()),
            };
            let headers = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).trim().to_string(),
                    )
                })
                .collect();
            Ok(Some(Head {
                method,
                target: req.path.unwrap_or("/").to_string(),
                minor_version: req.version.unwrap_or(1),
                headers,
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(_) => Err(HeadError::Malformed),
    }
}
