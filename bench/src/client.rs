//! Clients of the server under test: fast, slow and stalled readers of a stream, each
//! parsing parts and recording per-frame latency, gaps, duplicates and invalid JPEGs.
use crate::upstream::now_us;
use mjpeg_relay::parser::{Event, Parser};
use mjpeg_relay::testjpeg::payload_of;
use mjpeg_testkit::try_connect;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Fast,
    Slow,
    Stalled,
    Churn,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Fast => "fast",
            Kind::Slow => "slow",
            Kind::Stalled => "stalled",
            Kind::Churn => "churn",
        }
    }
}

/// What one client saw.
#[derive(Default, Debug)]
pub(crate) struct ClientLog {
    /// (seconds since run start at receive, latency µs, seq)
    pub(crate) frames: Vec<(f32, u32, u64)>,
    pub(crate) bytes: u64,
    pub(crate) gaps: u64,
    pub(crate) dup_or_reorder: u64,
    pub(crate) invalid: u64,
    pub(crate) connects: u64,
    pub(crate) failed: u64,
}

pub(crate) struct Url {
    pub(crate) addr: String,
    pub(crate) path: String,
}

pub(crate) fn parse_url(url: &str) -> Result<Url, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url must start with http://: {url}"))?;
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = addr.rsplit_once(':').map(|h| h.0).unwrap_or(addr);
    if host != "127.0.0.1" && host != "localhost" && host != "[::1]" {
        return Err(format!("loopback only: {url}"));
    }
    Ok(Url {
        addr: addr.replace("localhost", "127.0.0.1"),
        path: format!("/{path}"),
    })
}

/// Opens the stream; returns the socket, the parser for its boundary, and bytes after the head.
pub(crate) fn open_stream(
    url: &Url,
    rcvbuf: Option<i32>,
) -> std::io::Result<(TcpStream, Parser, Vec<u8>)> {
    let mut s = try_connect(&url.addr, rcvbuf)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mjpeg-bench\r\n\r\n",
        url.path, url.addr
    )?;
    let mut head = Vec::new();
    let mut b = [0u8; 2048];
    let end = loop {
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut b)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&b[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    if !text.starts_with("http/1.1 200") && !text.starts_with("http/1.0 200") {
        return Err(std::io::Error::other(format!(
            "status: {}",
            text.lines().next().unwrap_or("")
        )));
    }
    let parser = match text.split("boundary=").nth(1) {
        Some(b) => Parser::with_boundary(64 << 20, b.split(['\r', '\n', ';']).next().unwrap_or("")),
        None => Parser::new(64 << 20),
    };
    Ok((s, parser, head[end + 4..].to_vec()))
}

/// Records one received frame.
pub(crate) fn record(log: &mut ClientLog, last: &mut u64, jpeg: &[u8], t0: Instant) {
    let recv = now_us();
    let Some(p) = payload_of(jpeg).and_then(|p| std::str::from_utf8(p).ok()) else {
        log.invalid += 1;
        return;
    };
    let mut it = p.split(',');
    let (Some(Ok(seq)), Some(Ok(sent))) = (
        it.next().map(str::parse::<u64>),
        it.next().map(str::parse::<u64>),
    ) else {
        log.invalid += 1;
        return;
    };
    if *last != 0 {
        if seq <= *last {
            log.dup_or_reorder += 1;
        } else {
            log.gaps += seq - *last - 1;
        }
    }
    *last = seq;
    let lat = recv.saturating_sub(sent).min(u64::from(u32::MAX)) as u32;
    log.frames.push((t0.elapsed().as_secs_f32(), lat, seq));
}

/// Reads frames until `until`, optionally throttled to `rate` bytes/s, or stopping after
/// `max_frames`.
pub(crate) fn read_stream(
    url: &Url,
    rcvbuf: Option<i32>,
    rate: Option<f64>,
    max_frames: Option<usize>,
    until: Instant,
    t0: Instant,
    log: &mut ClientLog,
) {
    log.connects += 1;
    let (mut s, mut parser, rest) = match open_stream(url, rcvbuf) {
        Ok(x) => x,
        Err(e) => {
            if log.failed == 0 {
                eprintln!("client: opening the stream failed: {e}");
            }
            log.failed += 1;
            return;
        }
    };
    let mut last = 0u64;
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut read_total = 0f64;
    let mut feed = |bytes: &[u8], log: &mut ClientLog, last: &mut u64, got: &mut usize| {
        let mut frames = Vec::new();
        parser.push(bytes, &mut |e| match e {
            Event::Frame(f) => frames.push(f),
            Event::Dropped(_) | Event::Captured(_) => {}
        });
        for f in frames {
            record(log, last, &f, t0);
            *got += 1;
        }
    };
    feed(&rest, log, &mut last, &mut got);
    while Instant::now() < until && max_frames.is_none_or(|m| got < m) {
        let mut want = buf.len();
        if let Some(rate) = rate {
            let allowed = started.elapsed().as_secs_f64() * rate - read_total;
            if allowed < 1024.0 {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            want = want.min(allowed as usize);
        }
        let left = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let _ = s.set_read_timeout(Some(left.min(Duration::from_secs(2))));
        match s.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                log.bytes += n as u64;
                read_total += n as f64;
                feed(&buf[..n], log, &mut last, &mut got);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

pub(crate) fn spawn_client(
    kind: Kind,
    url: Arc<Url>,
    slow_rate: f64,
    churn_per_sec: f64,
    until: Instant,
    t0: Instant,
) -> JoinHandle<ClientLog> {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut log = ClientLog::default();
            match kind {
                Kind::Fast => read_stream(&url, None, None, None, until, t0, &mut log),
                Kind::Slow => read_stream(
                    &url,
                    Some(16 * 1024),
                    Some(slow_rate),
                    None,
                    until,
                    t0,
                    &mut log,
                ),
                Kind::Stalled => {
                    log.connects += 1;
                    match try_connect(&url.addr, Some(16 * 1024)) {
                        Ok(mut s) => {
                            let _ =
                                write!(s, "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", url.path);
                            std::thread::sleep(until.saturating_duration_since(Instant::now()));
                        }
                        Err(_) => log.failed += 1,
                    }
                }
                Kind::Churn => {
                    // Connect, read three frames, leave; at `churn_per_sec` over all churners.
                    let interval = Duration::from_secs_f64(1.0 / churn_per_sec.max(0.01));
                    let mut next = Instant::now();
                    while Instant::now() < until {
                        read_stream(&url, None, None, Some(3), until, t0, &mut log);
                        next += interval;
                        if let Some(w) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(
                                w.min(until.saturating_duration_since(Instant::now())),
                            );
                        }
                    }
                }
            }
            log
        })
        .expect("spawn client thread")
}
