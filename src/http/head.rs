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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn heads_parse_or_say_why_not() {
        let h = parse_head(b"GET /stream?fps=5 HTTP/1.0\r\nUser-Agent: curl\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.target, "/stream?fps=5");
        assert_eq!(h.minor_version, 0);
        assert_eq!(h.headers, vec![("User-Agent".into(), "curl".into())]);
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
        assert_eq!(
            parse_head(b"\x16\x03\x01garbage\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(req.as_bytes()).unwrap_err(), HeadError::TooLarge);
        let h = parse_head(b"BREW /pot HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.method, Method::Other("BREW".into()));
    }

    /// `read_head` over a socket pair, the client side writing `pieces` one at a time.
    fn read_in_pieces(pieces: &[&[u8]]) -> Result<Head, HeadError> {
        let (mut client, server) = UnixStream::pair().unwrap();
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let writer = std::thread::spawn(move || {
            for p in pieces {
                if client.write_all(&p).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            // Keep our end open a moment: the result must come from the bytes, not an EOF.
            std::thread::sleep(Duration::from_millis(300));
        });
        let got = read_head(&mut Conn::Unix(server), Duration::from_secs(5));
        writer.join().unwrap();
        got
    }

    #[test]
    fn heads_arriving_in_any_pieces_are_read_whole() {
        let head = b"GET /stream HTTP/1.1\r\nHost: x\r\nUser-Agent: curl\r\n\r\n";
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        let h = read_in_pieces(&bytes).unwrap();
        assert_eq!(h.target, "/stream");
        assert_eq!(h.headers.len(), 2);
        // The blank line split across reads, with CRLF and with bare LF.
        let h = read_in_pieces(&[b"GET /a HTTP/1.1\r\nHost: x\r\n\r", b"\n"]).unwrap();
        assert_eq!(h.target, "/a");
        let h = read_in_pieces(&[b"GET /b HTTP/1.0\n", b"Host: x\n", b"\n"]).unwrap();
        assert_eq!(h.target, "/b");
        // Garbage is refused on its first read, a bad header line once the head is complete.
        assert_eq!(
            read_in_pieces(&[b"\x16\x03\x01\x02\x00"]).unwrap_err(),
            HeadError::Malformed
        );
        assert_eq!(
            read_in_pieces(&[b"GET / HTTP/1.1\r\n", b"Bad Header\r\n", b"\r\n"]).unwrap_err(),
            HeadError::Malformed
        );
        // Endless header lines: refused past MAX_HEAD even without a blank line.
        let line = b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut pieces: Vec<&[u8]> = vec![b"GET / HTTP/1.1\r\n"];
        pieces.extend(std::iter::repeat_n(&line[..], MAX_HEAD / line.len() + 2));
        assert_eq!(read_in_pieces(&pieces).unwrap_err(), HeadError::TooLarge);
    }
}
