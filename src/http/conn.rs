#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! A client connection (TCP, TLS over TCP, or a Unix socket behind a proxy), the request read
//! from it and the response written to it. The connection layer ([`super::server`]) makes
//! them; handlers answer a [`Request`] with a [`Response`], or take its [`Conn`] over for a
//! response that never ends ([`Request::into_conn`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TLS session over a client's TCP socket (`--tls-cert`).
pub use super::tls::TlsConn as TlsStream;

/// A client connection: TCP, TLS over TCP, or a Unix socket behind a local proxy.
#[derive(Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    Unix(UnixStream),
}

impl Conn {
    pub(super) fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            // A second handle of the socket underneath (to close it by), not of the session.
            Conn::Tls(s) => Conn::Tcp(s.sock.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    pub(super) fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(d),
            Conn::Tls(s) => s.sock.set_read_timeout(d),
            Conn::Unix(s) => s.set_read_timeout(d),
        }
    }

    pub(super) fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_write_timeout(d),
            Conn::Tls(s) => s.sock.set_write_timeout(d),
            Conn::Unix(s) => s.set_write_timeout(d),
        }
    }

    pub(super) fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
            Conn::Tls(s) => s.sock.shutdown(Shutdown::Both),
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    /// The TCP socket's descriptor (under TLS too), for the in-flight bound; `None` for a
    /// Unix socket.
    pub fn tcp_fd(&self) -> Option<RawFd> {
        match self {
            Conn::Tcp(s) => Some(s.as_raw_fd()),
            Conn::Tls(s) => Some(s.sock.as_raw_fd()),
            Conn::Unix(_) => None,
        }
    }

    /// The socket of a Unix-socket connection (a reverse proxy on the same host).
    pub fn unix_fd(&self) -> Option<RawFd> {
        match self {
            Conn::Unix(s) => Some(s.as_raw_fd()),
            _ => None,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    /// Plain sockets hold nothing back; a TLS session writes out its pending records.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Tls(s) => s.sock.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// The request methods the relay tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    Other(String),
}

/// One parsed request head, and the connection to answer on.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The request target as sent: path and query, not decoded.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
    /// The client's address for logs, `unix` for a Unix socket peer.
    pub peer: String,
    /// The client's IP address (none on a Unix socket): the key of per-address bounds.
    pub ip: Option<std::net::IpAddr>,
    pub(super) conn: Conn,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Writes `resp` and closes the connection.
    pub fn respond(mut self, resp: Response) -> io::Result<()> {
        let head_only = self.method == Method::Head;
        let result = resp.write_to(&mut self.conn, self.minor_version, head_only);
        linger_close(self.conn);
        result
    }

    /// The connection, for responses written by hand (`/stream`).
    pub fn into_conn(self) -> Conn {
        self.conn
    }
}

/// Closes after a response. Closing a socket with unread input (a request body, pipelined
/// requests) makes the kernel send a reset, which can destroy the response in flight to the
/// client; so: end our side, read and discard briefly until the client closes, then close.
pub(super) fn linger_close(mut conn: Conn) {
    let _ = match &mut conn {
        Conn::Tcp(s) => s.shutdown(Shutdown::Write),
        Conn::Tls(s) => {
            s.close_notify();
            s.sock.shutdown(Shutdown::Write)
        }
        Conn::Unix(s) => s.shutdown(Shutdown::Write),
    };
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match conn.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Longest wait for a client to close after its response (see `linger_close`).
const LINGER: Duration = Duration::from_millis(500);

/// A response body.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Bytes shared with other threads (a frame), written without a copy.
    Shared(Arc<dyn AsRef<[u8]> + Send + Sync>),
    File(File, u64),
    /// Several byte sequences one after another (a `/clip`: our headers and the frames'
    /// JPEGs, shared), each written as it is, never gathered into one copy.
    Pieces(Vec<Arc<dyn AsRef<[u8]> + Send + Sync>>),
    /// A never-ending frame stream (`/stream`, `/mux`): only the head is this response's
    /// (no `Content-Length`); the viewer writes the parts after it.
    Endless,
}

/// A status, headers and a body; always sent with `Content-Length` (but an endless one) and
/// `Connection: close`. [`Response::head`] is the one writer of response heads.
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Response {
    pub fn new(status: u16, body: Body) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub fn empty(status: u16) -> Response {
        Response::new(status, Body::Empty)
    }

    pub fn bytes(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, Body::Bytes(body.into()))
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// For a picture or a state that must never be stale: no cache may keep it.
    pub fn no_cache(self) -> Response {
        self.with_header(
            "Cache-Control",
            "no-cache, no-store, must-revalidate, max-age=0",
        )
        .with_header("Pragma", "no-cache")
        .with_header("Expires", "0")
    }

    /// The head: status line, headers, `X-Content-Type-Options: nosniff`, `Content-Length`
    /// (none for 204, 304 or an endless body), `Connection: close`. HTTP/1.0 is answered in
    /// kind (`minor`).
    pub fn head(&self, minor: u8) -> String {
        let len = match &self.body {
            Body::Empty | Body::Endless => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Shared(b) => b.as_ref().as_ref().len() as u64,
            Body::File(_, n) => *n,
            Body::Pieces(p) => p.iter().map(|b| b.as_ref().as_ref().len() as u64).sum(),
        };
        let mut head = format!(
            "HTTP/1.{} {} {}\r\n",
            minor.min(1),
            self.status,
            reason(self.status)
        );
        for (k, v) in &self.headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        // Every response, from the connection layer's refusals to a stream: no browser may
        // take a text or a picture for something else (an upload served back as HTML).
        head.push_str("X-Content-Type-Options: nosniff\r\n");
        let endless = matches!(self.body, Body::Endless);
        if self.status != 204 && self.status != 304 && !endless {
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        head
    }

    pub(super) fn write_to(self, w: &mut dyn Write, minor: u8, head_only: bool) -> io::Result<()> {
        let head = self.head(minor);
        if head_only {
            return w.write_all(head.as_bytes());
        }
        match self.body {
            Body::Empty | Body::Endless => w.write_all(head.as_bytes()),
            Body::Bytes(mut b) => {
                // One write for small responses: head and body together.
                let mut all = head.into_bytes();
                all.append(&mut b);
                w.write_all(&all)
            }
            Body::Shared(b) => {
                w.write_all(head.as_bytes())?;
                w.write_all(b.as_ref().as_ref())
            }
            Body::Pieces(pieces) => {
                w.write_all(head.as_bytes())?;
                pieces
                    .iter()
                    .try_for_each(|b| w.write_all(b.as_ref().as_ref()))
            }
            Body::File(mut f, n) => {
                w.write_all(head.as_bytes())?;
                io::copy(&mut (&mut f).take(n), w).map(|_| ())
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}
