//! Clients of the relay on plain sockets: a request and its head, a stream read part by
//! part ([`StreamClient`]), connections from a chosen local address, and waits on a stream.
//! Every request a test writes by hand goes through [`request`] or [`StreamClient`].

use mjpeg_relay::parser::{Event, Parser};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// A TCP connection to `addr`, with `SO_RCVBUF` set before connecting when given (the
/// receive window is negotiated at connect time, so it must be set first).
/// A TCP connection to an IPv4 `addr` with `SO_RCVBUF` set before connecting (a small
/// receive buffer makes a slow reader's backlog visible to the sender sooner). Panics on error.
pub fn connect(addr: &str, rcvbuf: Option<i32>) -> TcpStream {
    try_connect(addr, rcvbuf).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// [`connect`], returning the error (the benchmark counts failed connections).
pub fn try_connect(addr: &str, rcvbuf: Option<i32>) -> std::io::Result<TcpStream> {
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let std::net::SocketAddr::V4(v4) = sa else {
        return Err(std::io::Error::other("IPv4 loopback only"));
    };
    // SAFETY: plain socket syscalls on a descriptor we own; TcpStream takes it (and closes it
    // on every error path below).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(size) = rcvbuf {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const i32).cast(),
                4,
            );
        }
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Reads a response head; returns (status, lower-cased header lines, bytes after the head).
pub fn read_head(sock: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = sock.read(&mut chunk).expect("read response head");
        assert!(n > 0, "connection closed before the response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let code = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, buf[end + 4..].to_vec(), status_line)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A one-shot request with `Connection: close`; returns (status, headers, whole body).
pub fn request(addr: &str, raw: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    sock.write_all(raw.as_bytes()).unwrap();
    let (code, headers, mut body, _) = read_head(&mut sock);
    let _ = sock.read_to_end(&mut body);
    (code, headers, body)
}

pub fn get(addr: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// A `/stream` client that cuts the body into frames with the project's own parser.
pub struct StreamClient {
    pub sock: TcpStream,
    pub headers: Vec<(String, String)>,
    pub status_line: String,
    parser: Parser,
    frames: VecDeque<Vec<u8>>,
    pending: Vec<u8>,
}

impl StreamClient {
    pub fn open(addr: &str, path: &str, user_agent: &str, rcvbuf: Option<i32>) -> StreamClient {
        StreamClient::open_as(addr, addr, path, user_agent, rcvbuf)
    }

    /// [`open`](Self::open) with `host` in the `Host` header (a viewer that reached the
    /// relay, or the balancer in front of it, by a DNS name).
    pub fn open_as(
        addr: &str,
        host: &str,
        path: &str,
        user_agent: &str,
        rcvbuf: Option<i32>,
    ) -> StreamClient {
        StreamClient::on(connect(addr, rcvbuf), host, path, user_agent)
    }

    /// [`open`](Self::open) on a connection made already (over a delay line, from an
    /// address of the test's choice).
    pub fn on(mut sock: TcpStream, host: &str, path: &str, user_agent: &str) -> StreamClient {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.write_all(get_request(path, host, user_agent).as_bytes())
            .unwrap();
        let (code, headers, rest, status_line) = read_head(&mut sock);
        assert_eq!(code, 200, "{path}: {status_line}");
        let ct = header(&headers, "content-type").unwrap().to_string();
        let boundary = ct
            .split("boundary=")
            .nth(1)
            .expect("boundary in content-type");
        StreamClient {
            sock,
            headers,
            status_line,
            parser: Parser::with_boundary(64 << 20, boundary),
            frames: VecDeque::new(),
            pending: rest,
        }
    }

    /// Feeds bytes the caller read from `sock` itself (throttled readers); whole frames go
    /// to `out`.
    pub fn push_bytes(&mut self, bytes: &[u8], out: &mut Vec<Vec<u8>>) {
        let pending = std::mem::take(&mut self.pending);
        for chunk in [&pending[..], bytes] {
            self.parser.push(chunk, &mut |e| {
                if let Event::Frame(f) = e {
                    out.push(f)
                }
            });
        }
    }

    /// The next whole frame, or `None` on timeout or end of stream.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let frames = &mut self.frames;
        if !self.pending.is_empty() {
            let p = std::mem::take(&mut self.pending);
            self.parser.push(&p, &mut |e| {
                if let Event::Frame(f) = e {
                    frames.push_back(f)
                }
            });
        }
        let mut buf = vec![0u8; 64 * 1024];
        while self.frames.is_empty() {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let n = match self.sock.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            let frames = &mut self.frames;
            self.parser.push(&buf[..n], &mut |e| {
                if let Event::Frame(f) = e {
                    frames.push_back(f)
                }
            });
        }
        self.frames.pop_front()
    }
}

/// Reads frames until `pred` holds for one of them or `timeout` passes; returns the frames
/// read, the matching one last.
pub fn frames_until(
    client: &mut StreamClient,
    timeout: Duration,
    pred: impl Fn(&[u8]) -> bool,
) -> Option<Vec<Vec<u8>>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let f = client.next_frame(left)?;
        let hit = pred(&f);
        got.push(f);
        if hit {
            return Some(got);
        }
    }
}

/// A connection from a chosen loopback source address (127.0.0.0/8 is all loopback).
pub fn bound_to(from: &str, to: &str) -> TcpStream {
    connect_from(from, 0, to, None)
}

/// A TCP connection from `from`:`port` (0: any port) to the IPv4 `to`, with `SO_RCVBUF` set
/// before connecting when given (the receive window is negotiated at connect time).
pub fn connect_from(from: &str, port: u16, to: &str, rcvbuf: Option<i32>) -> TcpStream {
    let to: std::net::SocketAddrV4 = to.parse().unwrap();
    let from: std::net::Ipv4Addr = from.parse().unwrap();
    // SAFETY: plain socket calls on a descriptor we own until TcpStream takes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let int = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            int,
        );
        if let Some(rcv) = rcvbuf {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcv as *const libc::c_int).cast(),
                int,
            );
        }
        let sa = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        let local = sa(from, port);
        assert_eq!(
            libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
            0
        );
        let remote = sa(*to.ip(), to.port());
        assert_eq!(
            libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len),
            0
        );
        TcpStream::from_raw_fd(fd)
    }
}

/// Closes `sock` with a reset (`SO_LINGER` 0), as a browser's kernel does for a tab closed
/// with unread data.
pub fn close_with_reset(sock: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid linger struct on a socket we own.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(sock);
}

/// Reads `viewer` until a frame of `size` arrives; how long that took and whether a NO SIGNAL
/// picture came first.
pub fn until_size(
    viewer: &mut StreamClient,
    size: (u16, u16),
    limit: Duration,
) -> (Duration, bool) {
    use mjpeg_relay::{jpeg::dimensions, nosignal::is_no_signal};
    let start = Instant::now();
    let mut dark = false;
    while start.elapsed() < limit {
        let Some(f) = viewer.next_frame(limit) else {
            break;
        };
        dark |= is_no_signal(&f);
        if dimensions(&f) == Some(size) {
            return (start.elapsed(), dark);
        }
    }
    panic!("no {size:?} frame within {limit:?}");
}

/// The request a viewer sends: `GET path`, `Host`, `User-Agent`.
fn get_request(path: &str, host: &str, user_agent: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n\r\n")
}

/// Writes a viewer's `GET path` (`Host: 127.0.0.1`) and nothing else, on a connection the
/// test drives itself: one that never reads, one from an address of its choice, a Unix
/// socket, another program's stdin. [`StreamClient`] sends the same request.
pub fn send_get(w: &mut impl Write, path: &str, user_agent: &str) {
    w.write_all(get_request(path, "127.0.0.1", user_agent).as_bytes())
        .unwrap();
}

/// Reads `n` frames from `viewer`, each within 5 s and each a whole JPEG: the viewer is
/// served live.
pub fn expect_whole_frames(viewer: &mut StreamClient, n: usize) {
    for _ in 0..n {
        let f = viewer
            .next_frame(Duration::from_secs(5))
            .expect("live frame");
        assert!(
            mjpeg_relay::testjpeg::is_whole_jpeg(&f),
            "a frame that is not whole"
        );
    }
}

/// Everything `sock` receives until the relay closes it (15 s at most), as text.
pub fn read_to_close(mut sock: TcpStream) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
