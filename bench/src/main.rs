//! mjpeg-bench: load and latency measurement for any MJPEG-over-HTTP server.
//!
//! An upstream writes real JPEG frames on absolute deadlines, each carrying its sequence number
//! and send time in a COM segment; client threads of several kinds read the server's stream,
//! parse parts and record per-frame latency (receive-complete − send), gaps, duplicates and
//! invalid JPEGs; the server's CPU, RSS and threads are read from /proc. Everything runs on
//! 127.0.0.1 and every loop is bounded by the run's duration.
//!
//! `scenario NAME` runs one of the README's scenarios end to end (it starts the server itself:
//! mjpeg-relay, or the naive forwarder this tool also contains, or the raw-ceiling sender).
//! `load` runs the upstream and clients against a server you started. See `--help`.

use mjpeg_relay::parser::{Event, Parser};
use mjpeg_relay::source::testsrc;
use mjpeg_relay::testjpeg::{self, payload_of};
use mjpeg_testkit::{free_port, gst_part, try_connect};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HELP: &str = "\
mjpeg-bench: measure liveness and scale of an MJPEG-over-HTTP server (loopback only).

USAGE:
    mjpeg-bench scenario NAME [--server relay|naive|toy] [--duration S] [--relay-bin PATH]
        NAME: live | fanout | raw | churn | big | smoke | link | hop
        toy: a minimal relay built in (newest frame per client thread, TCP_NOTSENT_LOWAT,
        one write_all per frame), the baseline for the relay's cost per viewer
    mjpeg-bench scenario fanout [--clients 500,1000] [--servers relay,toy] [--pairs 3]
        [--frame-bytes 50000] [--duration S]
        the servers in turn (A B A B …); server CPU per delivered GB and per delivered frame
    mjpeg-bench scenario link [--rate 2mbit] [--queue 100] [--frame-bytes 20000] [--size WxH]
        [--servers relay,relay-nobound,naive] [--duration S]
        one viewer on a shaped link: a private network namespace (entered through unshare(1),
        as root or with a user namespace) whose loopback has MTU 1500 and an htb class at
        --rate with a --queue packet pfifo on the relay's HTTP port; relay-nobound is the relay
        with its in-flight bound switched off
    mjpeg-bench load --url http://127.0.0.1:PORT/stream --push 127.0.0.1:PORT [OPTIONS]
    mjpeg-bench naive-server --upstream 127.0.0.1:PORT --http 127.0.0.1:PORT
    mjpeg-bench raw-server --http 127.0.0.1:PORT --frame-bytes N
    mjpeg-bench toy-server --upstream 127.0.0.1:PORT --http 127.0.0.1:PORT

LOAD OPTIONS:
    --url URL            the server's stream URL (loopback)
    --push ADDR          connect to ADDR and push multipart frames (gstreamer tcpclientsink style)
    --listen ADDR        serve the frames to whoever connects to ADDR over plain TCP
    --serve-http ADDR    serve the frames over HTTP as multipart/x-mixed-replace
    --fps N              frames per second [30]
    --size WxH           picture size of the JPEG [640x480]
    --frame-bytes N      pad each frame with a COM segment to this size [20000]
    --fast N --slow N --stalled N --churn PER_SEC   clients of each kind [1 0 0 0]
    --slow-rate BYTES/S  throughput of slow clients [51200]; their SO_RCVBUF is 16 KiB
    --duration S         seconds [10]
    --pid PID            the server process, for CPU, RSS and threads
    --label TEXT         the first column of the report
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = || Args::parse(args.get(1..).unwrap_or_default());
    let result = match args.first().map(String::as_str) {
        Some("scenario") => rest().and_then(|a| scenario(&a)),
        Some("load") => rest().and_then(|a| parse_load(&a)).map(|cfg| {
            let report = run_load(&cfg, None);
            println!("{}", table_header());
            print!("{}", report.rows(&cfg.label));
        }),
        Some("naive-server") => rest().and_then(|a| naive_server(&a)),
        Some("raw-server") => rest().and_then(|a| raw_server(&a)),
        Some("toy-server") => rest().and_then(|a| toy_server(&a)),
        Some("-h") | Some("--help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command '{other}'; see --help")),
    };
    if let Err(e) = result {
        eprintln!("mjpeg-bench: {e}");
        std::process::exit(2);
    }
}

/// Every option any command takes; each takes a value.
const OPTIONS: &[&str] = &[
    "server",
    "duration",
    "relay-bin",
    "clients",
    "clients-n",
    "rate",
    "queue",
    "frame-bytes",
    "size",
    "servers",
    "pairs",
    "url",
    "push",
    "listen",
    "serve-http",
    "fps",
    "fast",
    "slow",
    "stalled",
    "churn",
    "slow-rate",
    "pid",
    "label",
    "http",
    "upstream",
];

/// A command's arguments, parsed once by lexopt: `--name value` (or `--name=value`) options
/// from [`OPTIONS`] and positional words. Strict, so a value is never taken for an option
/// and a mistyped option is an error, not silently ignored.
struct Args {
    /// As given, for re-running this tool with them (the link scenario's namespace).
    raw: Vec<String>,
    positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl Args {
    fn parse(raw: &[String]) -> Result<Args, String> {
        use lexopt::prelude::*;
        let mut p = lexopt::Parser::from_args(raw.iter().cloned());
        let (mut positional, mut options) = (Vec::new(), Vec::new());
        while let Some(arg) = p.next().map_err(|e| e.to_string())? {
            match arg {
                Long(name) if OPTIONS.contains(&name) => {
                    let name = name.to_string();
                    let value = p
                        .value()
                        .map_err(|_| format!("--{name} needs a value"))?
                        .into_string()
                        .map_err(|_| format!("--{name}: not UTF-8"))?;
                    options.push((name, value));
                }
                Value(v) => positional.push(v.to_string_lossy().into_owned()),
                other => return Err(format!("{}; see --help", other.unexpected())),
            }
        }
        Ok(Args {
            raw: raw.to_vec(),
            positional,
            options,
        })
    }
}

/// The value of `--name` (given with its dashes), the last one if repeated.
fn flag<'a>(args: &'a Args, name: &str) -> Option<&'a str> {
    let name = name.trim_start_matches('-');
    args.options
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn num<T: std::str::FromStr>(args: &Args, name: &str, default: T) -> Result<T, String> {
    match flag(args, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}: bad value '{v}'")),
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

// ---------------------------------------------------------------------------------------------
// Upstream

#[derive(Clone, Debug)]
enum UpMode {
    Push(String),
    Listen(String),
    ServeHttp(String),
}

/// Frames: a real WxH JPEG encoded once, with a COM segment `seq,send_us` and padding.
struct FrameMaker {
    base: Vec<u8>,
    target: usize,
}

impl FrameMaker {
    fn new(w: u16, h: u16, target: usize) -> FrameMaker {
        let mut px = vec![0u8; usize::from(w) * usize::from(h) * 3];
        testsrc::render(&mut px, w, h, 1);
        let base = testsrc::encode(&px, w, h).expect("encode base frame");
        FrameMaker { base, target }
    }

    fn make(&self, seq: u64) -> Vec<u8> {
        let text = format!("{seq},{}", now_us());
        let overhead = self.base.len() + 40 + text.len();
        let pad = self.target.saturating_sub(overhead);
        testjpeg::tagged(&self.base, text.as_bytes(), pad)
    }
}

/// Sends frames on absolute deadlines until `until`, keeping the last sequence number sent in
/// `sent`.
fn run_upstream(mode: UpMode, maker: FrameMaker, fps: f64, until: Instant, sent: Arc<AtomicU64>) {
    let mut sock = match &mode {
        UpMode::Push(addr) => {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match TcpStream::connect(addr) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => panic!("upstream connect {addr}: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        UpMode::Listen(addr) | UpMode::ServeHttp(addr) => {
            let l = TcpListener::bind(addr).expect("bind upstream listener");
            let (mut s, _) = l.accept().expect("accept the server's connection");
            if let UpMode::ServeHttp(_) = mode {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=spionisto\r\n\
                      Connection: close\r\n\r\n",
                );
            }
            s
        }
    };
    let _ = sock.set_nodelay(true);
    let interval = Duration::from_secs_f64(1.0 / fps);
    let start = Instant::now();
    // Sequence numbers start at the wall clock in µs, so they keep growing across runs against
    // the same relay (the soak): a client that first gets the previous run's last frame does
    // not count the new run's frames as reordered.
    let first = now_us();
    let mut n = 0u32;
    loop {
        let due = start + interval * n;
        if due >= until {
            break;
        }
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        let seq = first + u64::from(n);
        if sock.write_all(&gst_part(&maker.make(seq))).is_err() {
            break;
        }
        sent.store(seq, SeqCst);
        n += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fast,
    Slow,
    Stalled,
    Churn,
}

impl Kind {
    fn name(self) -> &'static str {
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
struct ClientLog {
    /// (seconds since run start at receive, latency µs, seq)
    frames: Vec<(f32, u32, u64)>,
    bytes: u64,
    gaps: u64,
    dup_or_reorder: u64,
    invalid: u64,
    connects: u64,
    failed: u64,
}

struct Url {
    addr: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
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
fn open_stream(url: &Url, rcvbuf: Option<i32>) -> std::io::Result<(TcpStream, Parser, Vec<u8>)> {
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
fn record(log: &mut ClientLog, last: &mut u64, jpeg: &[u8], t0: Instant) {
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
fn read_stream(
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
            Event::Dropped(_) => {}
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

fn spawn_client(
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

// ---------------------------------------------------------------------------------------------
// /proc sampling

#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    cpu_ticks: u64,
    rss_kb: u64,
    threads: u64,
    fds: u64,
}

fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let cpu_ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcSample {
        cpu_ticks,
        rss_kb: field("VmRSS:"),
        threads: field("Threads:"),
        fds,
    })
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

// ---------------------------------------------------------------------------------------------
// A run

#[derive(Clone, Debug)]
struct LoadCfg {
    url: String,
    up: Option<UpMode>,
    fps: f64,
    w: u16,
    h: u16,
    frame_bytes: usize,
    fast: usize,
    slow: usize,
    stalled: usize,
    churn: f64,
    slow_rate: f64,
    duration: f64,
    pid: Option<u32>,
    label: String,
}

fn parse_load(a: &Args) -> Result<LoadCfg, String> {
    let (w, h) = flag(a, "--size")
        .unwrap_or("640x480")
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .ok_or("--size: WxH")?;
    let up = if let Some(x) = flag(a, "--push") {
        Some(UpMode::Push(x.into()))
    } else if let Some(x) = flag(a, "--listen") {
        Some(UpMode::Listen(x.into()))
    } else {
        flag(a, "--serve-http").map(|x| UpMode::ServeHttp(x.into()))
    };
    Ok(LoadCfg {
        url: flag(a, "--url").ok_or("--url is required")?.into(),
        up,
        fps: num(a, "--fps", 30.0)?,
        w,
        h,
        frame_bytes: num(a, "--frame-bytes", 20_000)?,
        fast: num(a, "--fast", 1)?,
        slow: num(a, "--slow", 0)?,
        stalled: num(a, "--stalled", 0)?,
        churn: num(a, "--churn", 0.0)?,
        slow_rate: num(a, "--slow-rate", 51_200.0)?,
        duration: num(a, "--duration", 10.0)?,
        pid: flag(a, "--pid")
            .map(|p| p.parse())
            .transpose()
            .map_err(|_| "--pid")?,
        label: flag(a, "--label").unwrap_or("load").into(),
    })
}

struct Report {
    duration: f64,
    fps: f64,
    sent: u64,
    kinds: Vec<(Kind, Vec<ClientLog>)>,
    proc_start: Option<ProcSample>,
    proc_end: Option<ProcSample>,
    proc_max_rss: u64,
    proc_max_threads: u64,
    /// Samples after the clients have gone (churn): (seconds after the end, sample).
    proc_after: Option<ProcSample>,
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn table_header() -> String {
    "| run | clients | frames/s per client | latency p50 / p99 / max (ms) | last fifth p50 / p99 (ms) | skipped | errors | delivered MB/s | server CPU | server RSS | threads |\n\
     |---|---|---|---|---|---|---|---|---|---|---|"
        .to_string()
}

impl Report {
    fn server_cols(&self) -> (String, String, String) {
        match (self.proc_start, self.proc_end) {
            (Some(a), Some(b)) => {
                let cpu = (b.cpu_ticks - a.cpu_ticks) as f64 / clk_tck() / self.duration * 100.0;
                (
                    format!("{cpu:.1}%"),
                    format!(
                        "{:.1} MB (max {:.1})",
                        b.rss_kb as f64 / 1024.0,
                        self.proc_max_rss as f64 / 1024.0
                    ),
                    format!("{} (max {})", b.threads, self.proc_max_threads),
                )
            }
            _ => ("-".into(), "-".into(), "-".into()),
        }
    }

    fn delivered_bytes(&self) -> u64 {
        self.kinds
            .iter()
            .flat_map(|(_, l)| l.iter())
            .map(|l| l.bytes)
            .sum()
    }

    fn delivered_frames(&self) -> u64 {
        self.kinds
            .iter()
            .flat_map(|(_, l)| l.iter())
            .map(|l| l.frames.len() as u64)
            .sum()
    }

    fn server_cpu_secs(&self) -> Option<f64> {
        Some((self.proc_end?.cpu_ticks - self.proc_start?.cpu_ticks) as f64 / clk_tck())
    }

    /// One row with throughput only, for the raw ceiling: it repeats one prepared frame, so
    /// latency, gaps and duplicates mean nothing there.
    fn throughput_row(&self, label: &str) -> String {
        let (cpu, rss, threads) = self.server_cols();
        let logs: Vec<_> = self.kinds.iter().flat_map(|(_, l)| l.iter()).collect();
        let frames: usize = logs.iter().map(|l| l.frames.len()).sum();
        let fps = frames as f64 / logs.len().max(1) as f64 / self.duration;
        format!(
            "| {label} | {} fast | {fps:.1} | - (one frame repeated) | - | - | - | {:.2} | {cpu} | {rss} | {threads} |\n",
            logs.len(),
            self.delivered_bytes() as f64 / self.duration / 1e6
        )
    }

    fn rows(&self, label: &str) -> String {
        let (cpu, rss, threads) = self.server_cols();
        let mut out = String::new();
        for (kind, logs) in &self.kinds {
            if logs.is_empty() {
                continue;
            }
            let n = logs.len();
            let mut lat: Vec<u32> = logs
                .iter()
                .flat_map(|l| l.frames.iter().map(|f| f.1))
                .collect();
            lat.sort_unstable();
            let cut = (self.duration * 0.8) as f32;
            let mut tail: Vec<u32> = logs
                .iter()
                .flat_map(|l| l.frames.iter().filter(|f| f.0 >= cut).map(|f| f.1))
                .collect();
            tail.sort_unstable();
            let frames: usize = logs.iter().map(|l| l.frames.len()).sum();
            let gaps: u64 = logs.iter().map(|l| l.gaps).sum();
            let errors: u64 = logs
                .iter()
                .map(|l| l.dup_or_reorder + l.invalid + l.failed)
                .sum();
            let bytes: u64 = logs.iter().map(|l| l.bytes).sum();
            let fps = frames as f64 / n as f64 / self.duration;
            let skipped = if frames as u64 + gaps > 0 {
                gaps as f64 / (frames as u64 + gaps) as f64 * 100.0
            } else {
                0.0
            };
            let (lat_s, tail_s, fps_s, skip_s) = if *kind == Kind::Stalled {
                (
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                )
            } else {
                (
                    format!(
                        "{:.1} / {:.1} / {:.1}",
                        pct(&lat, 0.5),
                        pct(&lat, 0.99),
                        pct(&lat, 1.0)
                    ),
                    format!("{:.1} / {:.1}", pct(&tail, 0.5), pct(&tail, 0.99)),
                    format!("{fps:.1}"),
                    format!("{skipped:.1}%"),
                )
            };
            if errors > 0 {
                eprintln!(
                    "{label} {}: errors: {} duplicate/reordered, {} invalid, {} failed connections",
                    kind.name(),
                    logs.iter().map(|l| l.dup_or_reorder).sum::<u64>(),
                    logs.iter().map(|l| l.invalid).sum::<u64>(),
                    logs.iter().map(|l| l.failed).sum::<u64>()
                );
            }
            let connects: u64 = logs.iter().map(|l| l.connects).sum();
            let who = if *kind == Kind::Churn {
                format!("{n} {} ({connects} connects)", kind.name())
            } else {
                format!("{n} {}", kind.name())
            };
            out += &format!(
                "| {label} | {who} | {fps_s} | {lat_s} | {tail_s} | {skip_s} | {errors} | {:.2} | {cpu} | {rss} | {threads} |\n",
                bytes as f64 / self.duration / 1e6
            );
        }
        out
    }
}

fn run_load(cfg: &LoadCfg, after_wait: Option<Duration>) -> Report {
    let url = Arc::new(parse_url(&cfg.url).unwrap_or_else(|e| panic!("{e}")));
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs_f64(cfg.duration);
    let sent = Arc::new(AtomicU64::new(0));
    let proc_start = cfg.pid.and_then(sample);
    let upstream = cfg.up.clone().map(|mode| {
        let maker = FrameMaker::new(cfg.w, cfg.h, cfg.frame_bytes);
        let (fps, sent) = (cfg.fps, sent.clone());
        // The upstream runs a little longer than the clients so the last fifth is not a tail-off.
        let up_until = until + Duration::from_millis(500);
        std::thread::spawn(move || run_upstream(mode, maker, fps, up_until, sent))
    });
    let mut handles: Vec<(Kind, JoinHandle<ClientLog>)> = Vec::new();
    let add = |kind: Kind, count: usize, handles: &mut Vec<(Kind, JoinHandle<ClientLog>)>| {
        for _ in 0..count {
            let h = spawn_client(kind, url.clone(), cfg.slow_rate, 0.0, until, t0);
            handles.push((kind, h));
        }
    };
    add(Kind::Fast, cfg.fast, &mut handles);
    add(Kind::Slow, cfg.slow, &mut handles);
    add(Kind::Stalled, cfg.stalled, &mut handles);
    if cfg.churn > 0.0 {
        // Ten churning threads share the connect rate.
        for _ in 0..10 {
            let h = spawn_client(Kind::Churn, url.clone(), 0.0, cfg.churn / 10.0, until, t0);
            handles.push((Kind::Churn, h));
        }
    }
    let mut max_rss = 0;
    let mut max_threads = 0;
    while Instant::now() < until {
        if let Some(s) = cfg.pid.and_then(sample) {
            max_rss = max_rss.max(s.rss_kb);
            max_threads = max_threads.max(s.threads);
        }
        std::thread::sleep(
            Duration::from_millis(500).min(until.saturating_duration_since(Instant::now())),
        );
    }
    let proc_end = cfg.pid.and_then(sample);
    let mut kinds: Vec<(Kind, Vec<ClientLog>)> =
        [Kind::Fast, Kind::Slow, Kind::Stalled, Kind::Churn]
            .iter()
            .map(|k| (*k, Vec::new()))
            .collect();
    for (kind, h) in handles {
        let log = h.join().expect("client thread");
        kinds
            .iter_mut()
            .find(|(k, _)| *k == kind)
            .unwrap()
            .1
            .push(log);
    }
    if let Some(h) = upstream {
        let _ = h.join();
    }
    let proc_after = after_wait.and_then(|w| {
        std::thread::sleep(w);
        cfg.pid.and_then(sample)
    });
    Report {
        duration: cfg.duration,
        fps: cfg.fps,
        sent: sent.load(SeqCst),
        kinds,
        proc_start,
        proc_end,
        proc_max_rss: max_rss,
        proc_max_threads: max_threads,
        proc_after,
    }
}

// ---------------------------------------------------------------------------------------------
// Servers under test

/// A server process on ephemeral ports; killed on drop.
struct Server {
    child: Child,
    http: String,
    upstream: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_relay(bin: &str) -> Server {
    start_relay_env(bin, &[])
}

fn start_relay_env(bin: &str, env: &[(&str, &str)]) -> Server {
    start_relay_with(bin, env, "tcp-listen:127.0.0.1:0")
}

/// The relay with `source`; a `tcp-listen:` one is where the benchmark's upstream pushes.
fn start_relay_with(bin: &str, env: &[(&str, &str)], source: &str) -> Server {
    let mut child = Command::new(bin)
        .envs(env.iter().copied())
        .args([
            "--source",
            source,
            "--http",
            "127.0.0.1:0",
            "--max-clients",
            "5000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e} (build it with cargo build --release)"));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var_os("BENCH_LOG").is_some() {
                eprintln!("relay: {line}");
            }
            let _ = tx.send(line);
        }
    });
    let (mut http, mut up) = (None, None);
    let wants_up = source.starts_with("tcp-listen:");
    while http.is_none() || (wants_up && up.is_none()) {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("relay start-up line");
        if let Some(r) = line.split("serving http://").nth(1) {
            http = r.split('/').next().map(String::from);
        }
        if let Some(r) = line.split("waiting for the upstream on tcp ").nth(1) {
            up = Some(r.trim().to_string());
        }
    }
    Server {
        child,
        http: http.unwrap(),
        upstream: up,
    }
}

fn start_self(args: &[&str], http: String, upstream: Option<String>) -> Server {
    let me = std::env::current_exe().expect("own path");
    let mut child = Command::new(me)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start helper server");
    // It prints "ready" once bound; a probe connection would itself become a client.
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    assert_eq!(line.trim(), "ready", "helper server did not start");
    Server {
        child,
        http,
        upstream,
    }
}

/// One of this tool's own helper servers (`naive-server`, `toy-server`) on free ports.
fn start_helper(command: &str) -> Server {
    let (h, u) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    start_self(
        &[command, "--http", &h, "--upstream", &u],
        h.clone(),
        Some(u.clone()),
    )
}

fn start_naive() -> Server {
    start_helper("naive-server")
}

/// Every connected naive client's unbounded queue; the unboundedness is the point being measured.
type NaiveClients = Arc<Mutex<Vec<mpsc::Sender<Arc<[u8]>>>>>;

/// The naive forwarder: every upstream chunk goes to every client through an unbounded queue.
/// This is the design that drifts; it exists here only to be measured side by side.
fn naive_server(a: &Args) -> Result<(), String> {
    let http = flag(a, "--http").ok_or("--http")?;
    let upstream = flag(a, "--upstream").ok_or("--upstream")?;
    let clients: NaiveClients = Arc::default();
    let up = TcpListener::bind(upstream).map_err(|e| e.to_string())?;
    let c2 = clients.clone();
    std::thread::spawn(move || {
        for conn in up.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk: Arc<[u8]> = Arc::from(&buf[..n]);
                c2.lock()
                    .unwrap()
                    .retain(|tx| tx.send(chunk.clone()).is_ok());
            }
        }
    });
    let l = TcpListener::bind(http).map_err(|e| e.to_string())?;
    println!("ready");
    for conn in l.incoming() {
        let Ok(mut conn) = conn else { continue };
        let (tx, rx) = mpsc::channel::<Arc<[u8]>>();
        clients.lock().unwrap().push(tx);
        std::thread::spawn(move || {
            if !answer(&mut conn) {
                return;
            }
            for chunk in rx {
                if conn.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

fn start_toy() -> Server {
    start_helper("toy-server")
}

/// The newest frame and its generation, for the toy server.
type ToySlot = Arc<(Mutex<(u64, Arc<[u8]>)>, std::sync::Condvar)>;

/// The toy: only the core trick, as a first good relay would write it. The upstream is split
/// into whole frames (with the relay's parser, so both split alike), the newest is kept as a
/// ready multipart part, and each client thread waits for a newer one and writes it with one
/// `write_all`; `TCP_NOTSENT_LOWAT` 16 KiB on the listener. No limits, no deadlines, no
/// counters, no registry, no in-flight bound: the baseline for the relay's cost per viewer.
fn toy_server(a: &Args) -> Result<(), String> {
    let http = flag(a, "--http").ok_or("--http")?;
    let upstream = flag(a, "--upstream").ok_or("--upstream")?;
    let slot: ToySlot = Arc::new((
        Mutex::new((0, Arc::from(Vec::new().into_boxed_slice()))),
        std::sync::Condvar::new(),
    ));
    let up = TcpListener::bind(upstream).map_err(|e| e.to_string())?;
    let s2 = slot.clone();
    std::thread::spawn(move || {
        for conn in up.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut parser = Parser::new(8 << 20);
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                parser.push(&buf[..n], &mut |e| {
                    if let Event::Frame(jpeg) = e {
                        let part: Arc<[u8]> = Arc::from(gst_part(&jpeg).into_boxed_slice());
                        let (lock, cond) = &*s2;
                        let mut g = lock.lock().unwrap();
                        *g = (g.0 + 1, part);
                        cond.notify_all();
                    }
                });
            }
        }
    });
    let l = TcpListener::bind(http).map_err(|e| e.to_string())?;
    let lowat: libc::c_int = 16 * 1024;
    // SAFETY: setsockopt and listen on the listener we own, with a plain c_int. The backlog
    // as the relay sizes it (std's 128 makes a thousand viewers fail to connect, which would
    // flatter the toy's figures with fewer clients).
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&lowat as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        libc::listen(l.as_raw_fd(), 4096);
    }
    println!("ready");
    for conn in l.incoming() {
        let Ok(mut conn) = conn else { continue };
        let slot = slot.clone();
        std::thread::spawn(move || {
            if !answer(&mut conn) {
                return;
            }
            let mut seen = 0;
            loop {
                let part = {
                    let (lock, cond) = &*slot;
                    let mut g = lock.lock().unwrap();
                    while g.0 == seen {
                        g = cond.wait(g).unwrap();
                    }
                    seen = g.0;
                    g.1.clone()
                };
                if conn.write_all(&part).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

/// The helper servers' whole HTTP: read (and ignore) the request, send a multipart head.
fn answer(conn: &mut TcpStream) -> bool {
    let mut req = [0u8; 4096];
    let _ = conn.read(&mut req);
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=spionisto\r\n\r\n";
    conn.write_all(head.as_bytes()).is_ok()
}

/// The ceiling: one prepared multipart part written to each client as fast as it takes it,
/// a thread per client, no parsing and no HTTP handling beyond one fixed response head.
fn raw_server(a: &Args) -> Result<(), String> {
    let http = flag(a, "--http").ok_or("--http")?;
    let size: usize = num(a, "--frame-bytes", 50_000)?;
    let maker = FrameMaker::new(640, 480, size);
    let part: Arc<[u8]> = Arc::from(gst_part(&maker.make(1)).into_boxed_slice());
    let l = TcpListener::bind(http).map_err(|e| e.to_string())?;
    println!("ready");
    for conn in l.incoming() {
        let Ok(mut conn) = conn else { continue };
        let part = part.clone();
        std::thread::spawn(move || {
            if answer(&mut conn) {
                while conn.write_all(&part).is_ok() {}
            }
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn scenario(a: &Args) -> Result<(), String> {
    let name = a
        .positional
        .first()
        .ok_or("scenario needs a name")?
        .as_str();
    let server_kind = flag(a, "--server").unwrap_or("relay");
    let relay_bin = flag(a, "--relay-bin")
        .unwrap_or("target/release/mjpeg-relay")
        .to_string();
    let dur = |d: f64| num(a, "--duration", d);
    let start = |kind: &str| -> Server {
        match kind {
            "naive" => start_naive(),
            "toy" => start_toy(),
            _ => start_relay(&relay_bin),
        }
    };
    let base = |srv: &Server, fps: f64, bytes: usize, d: f64| LoadCfg {
        url: format!("http://{}/stream", srv.http),
        up: srv.upstream.clone().map(UpMode::Push),
        fps,
        w: 640,
        h: 480,
        frame_bytes: bytes,
        fast: 0,
        slow: 0,
        stalled: 0,
        churn: 0.0,
        slow_rate: 51_200.0,
        duration: d,
        pid: Some(srv.child.id()),
        label: format!("{name} ({server_kind})"),
    };
    if name == "link" && std::env::var_os(IN_NETNS).is_none() {
        return link_scenario(a, &relay_bin, 0.0); // re-executes itself in a namespace
    }
    println!("{}", table_header());
    match name {
        "smoke" => {
            let srv = start(server_kind);
            let mut cfg = base(&srv, 30.0, 20_000, dur(3.0)?);
            (cfg.fast, cfg.slow, cfg.stalled) = (2, 1, 1);
            let r = run_load(&cfg, None);
            print!("{}", r.rows(&cfg.label));
            let fast = &r.kinds[0].1;
            if fast
                .iter()
                .any(|l| l.frames.len() < 10 || l.dup_or_reorder + l.invalid > 0)
            {
                return Err("smoke: a fast client got too few frames or bad ones".into());
            }
        }
        "live" => {
            let srv = start(server_kind);
            let mut cfg = base(&srv, 30.0, 20_000, dur(60.0)?);
            (cfg.fast, cfg.slow, cfg.stalled) = (1, 1, 1);
            let r = run_load(&cfg, None);
            print!("{}", r.rows(&cfg.label));
            // The slow client's lag over time, in frames: newest sent at receive vs received.
            let slow = &r.kinds[1].1[0];
            let mut line = format!(
                "{}: slow client lag over time (s since start: frames behind at 30 fps): ",
                cfg.label
            );
            let mut next_t = 0.0f32;
            for f in &slow.frames {
                if f.0 >= next_t {
                    line += &format!("{:.0}s:{:.0} ", f.0, f.1 as f64 / 1e6 * r.fps);
                    next_t += cfg.duration as f32 / 12.0;
                }
            }
            eprintln!("{}", line.trim_end());
            let _ = r.sent;
        }
        "fanout" => {
            let counts: Vec<usize> = flag(a, "--clients")
                .unwrap_or("100,250,500,1000")
                .split(',')
                .map(|c| c.parse().map_err(|_| "--clients: list of numbers"))
                .collect::<Result<_, _>>()?;
            // `--servers relay,toy --pairs 3`: the servers in turn, A B A B …, so a drift of
            // the machine's speed hits both alike; each run's cost per delivered frame.
            let servers: Vec<String> = flag(a, "--servers")
                .unwrap_or(server_kind)
                .split(',')
                .map(String::from)
                .collect();
            let pairs: usize = num(a, "--pairs", 1)?;
            let bytes: usize = num(a, "--frame-bytes", 50_000)?;
            for n in counts {
                for _ in 0..pairs {
                    for kind in &servers {
                        let srv = start(kind);
                        let mut cfg = base(&srv, 30.0, bytes, dur(30.0)?);
                        cfg.fast = n;
                        cfg.label = format!("fan-out {n} ({kind})");
                        let r = run_load(&cfg, None);
                        print!("{}", r.rows(&cfg.label));
                        if let (Some(cpu), Some(end)) = (r.server_cpu_secs(), r.proc_end) {
                            let gb = r.delivered_bytes() as f64 / 1e9;
                            let frames = r.delivered_frames().max(1) as f64;
                            eprintln!(
                                "fan-out {n} ({kind}): server CPU {:.2} s per delivered GB, {:.1} us \
                                 per delivered frame; RSS per client {:.1} KB",
                                cpu / gb,
                                cpu * 1e6 / frames,
                                end.rss_kb as f64 / n as f64
                            );
                        }
                    }
                }
            }
        }
        "raw" => {
            let n: usize = num(a, "--clients-n", 100)?;
            let d = dur(15.0)?;
            // The ceiling: a prepared buffer to N sockets as fast as they take it.
            let h = format!("127.0.0.1:{}", free_port());
            let raw = start_self(
                &["raw-server", "--http", &h, "--frame-bytes", "50000"],
                h.clone(),
                None,
            );
            let mut cfg = base(&raw, 30.0, 50_000, d);
            (cfg.up, cfg.fast, cfg.label) = (None, n, format!("raw ceiling, {n} clients"));
            let ceiling = run_load(&cfg, None);
            print!("{}", ceiling.throughput_row(&cfg.label));
            drop(raw);
            // The relay fed as fast as it takes frames: 1000 fps of 50 KB.
            let srv = start(server_kind);
            let mut cfg = base(&srv, 1000.0, 50_000, d);
            (cfg.fast, cfg.label) = (
                n,
                format!("raw limit ({server_kind}), {n} clients, upstream flat out"),
            );
            let r = run_load(&cfg, None);
            print!("{}", r.rows(&cfg.label));
            eprintln!(
                "raw: {server_kind} delivered {:.1} MB/s, ceiling {:.1} MB/s, ratio {:.2}",
                r.delivered_bytes() as f64 / d / 1e6,
                ceiling.delivered_bytes() as f64 / d / 1e6,
                r.delivered_bytes() as f64 / ceiling.delivered_bytes().max(1) as f64
            );
        }
        "churn" => {
            let srv = start(server_kind);
            let before = sample(srv.child.id());
            let mut cfg = base(&srv, 30.0, 20_000, dur(60.0)?);
            (cfg.fast, cfg.churn) = (20, 50.0);
            let r = run_load(&cfg, Some(Duration::from_secs(20)));
            print!("{}", r.rows(&cfg.label));
            if let (Some(b), Some(e), Some(a)) = (before, r.proc_end, r.proc_after) {
                eprintln!(
                    "churn: threads {} -> {} (during max {}) -> {} 20 s after; fds {} -> {} -> {}; RSS {:.1} -> {:.1} -> {:.1} MB",
                    b.threads, e.threads, r.proc_max_threads, a.threads, b.fds, e.fds, a.fds,
                    b.rss_kb as f64 / 1024.0, e.rss_kb as f64 / 1024.0, a.rss_kb as f64 / 1024.0
                );
            }
        }
        "big" => {
            let srv = start(server_kind);
            let mut cfg = base(&srv, 30.0, 200_000, dur(30.0)?);
            cfg.fast = 50;
            let r = run_load(&cfg, None);
            print!("{}", r.rows(&cfg.label));
        }
        "link" => link_scenario(a, &relay_bin, dur(30.0)?)?,
        "hop" => {
            // Origin and edge (pulling the origin over HTTP) at once, a fast viewer on each:
            // the same frames, so the difference is what one hop adds.
            let origin = start(server_kind);
            let edge = start_relay_with(&relay_bin, &[], &format!("http://{}/stream", origin.http));
            let d = dur(30.0)?;
            let mut at_edge = base(&edge, 30.0, 20_000, d);
            (at_edge.up, at_edge.fast) = (None, 1);
            at_edge.label = "hop: viewer of the edge".into();
            let edge_run = std::thread::spawn(move || {
                let r = run_load(&at_edge, None);
                r.rows(&at_edge.label)
            });
            let mut at_origin = base(&origin, 30.0, 20_000, d);
            at_origin.fast = 1;
            at_origin.label = "hop: viewer of the origin".into();
            let r = run_load(&at_origin, None);
            print!("{}", r.rows(&at_origin.label));
            print!("{}", edge_run.join().expect("edge run"));
        }
        other => return Err(format!("unknown scenario '{other}'")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The shaped link

/// Set in the environment of the copy of this tool that runs inside the network namespace.
const IN_NETNS: &str = "MJPEG_BENCH_IN_NETNS";

/// One viewer reading as fast as a shaped link allows, for each server in `--servers`, one
/// after another on the same link. Runs inside a private network namespace: this process
/// re-executes itself through `unshare --net` (and `--map-root-user` when not root), so the
/// shaping never touches the machine's own loopback and all traffic stays inside it.
fn link_scenario(a: &Args, relay_bin: &str, duration: f64) -> Result<(), String> {
    if std::env::var_os(IN_NETNS).is_none() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("unshare");
        cmd.arg("--net");
        if !root {
            cmd.arg("--map-root-user");
        }
        let status = cmd
            .arg(me)
            .arg("scenario")
            .args(&a.raw)
            .env(IN_NETNS, "1")
            .status()
            .map_err(|e| format!("cannot run unshare (util-linux): {e}"))?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("link scenario in the namespace: {status}"))
        };
    }
    let rate = flag(a, "--rate").unwrap_or("2mbit").to_string();
    let queue: u32 = num(a, "--queue", 100)?;
    let frame_bytes: usize = num(a, "--frame-bytes", 20_000)?;
    let (w, h) = flag(a, "--size")
        .unwrap_or("640x480")
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .ok_or("--size: WxH")?;
    let servers: Vec<String> = flag(a, "--servers")
        .unwrap_or("relay,relay-nobound,naive")
        .split(',')
        .map(String::from)
        .collect();
    sh("ip link set lo up")?;
    sh("ip link set lo mtu 1500")?;
    for kind in &servers {
        let srv = match kind.as_str() {
            "relay" => start_relay(relay_bin),
            "relay-nobound" => {
                start_relay_env(relay_bin, &[("MJPEG_RELAY_NO_INFLIGHT_BOUND", "1")])
            }
            "naive" => start_naive(),
            other => return Err(format!("--servers: unknown server '{other}'")),
        };
        let port = srv.http.rsplit(':').next().unwrap_or("0").to_string();
        shape(&rate, queue, &port)?;
        let cfg = LoadCfg {
            url: format!("http://{}/stream", srv.http),
            up: srv.upstream.clone().map(UpMode::Push),
            fps: 30.0,
            w,
            h,
            frame_bytes,
            fast: 1,
            slow: 0,
            stalled: 0,
            churn: 0.0,
            slow_rate: 0.0,
            duration,
            pid: Some(srv.child.id()),
            label: format!("link {rate} q{queue} {}KB ({kind})", frame_bytes / 1000),
        };
        let r = run_load(&cfg, None);
        print!("{}", r.rows(&cfg.label));
        let dropped = qdisc_drops();
        eprintln!("{}: bottleneck queue drops {dropped}", cfg.label);
        drop(srv);
    }
    Ok(())
}

/// Replaces the shaping on `lo`: traffic from `port` (the server's HTTP side) through an htb
/// class at `rate` with a `queue`-packet pfifo; everything else at full speed.
fn shape(rate: &str, queue: u32, port: &str) -> Result<(), String> {
    let _ = sh("tc qdisc del dev lo root");
    sh("tc qdisc add dev lo root handle 1: htb default 10 r2q 1000")?;
    sh("tc class add dev lo parent 1: classid 1:10 htb rate 10gbit")?;
    sh(&format!(
        "tc class add dev lo parent 1: classid 1:20 htb rate {rate}"
    ))?;
    sh(&format!(
        "tc qdisc add dev lo parent 1:20 handle 20: pfifo limit {queue}"
    ))?;
    sh(&format!(
        "tc filter add dev lo protocol ip parent 1: prio 1 u32 match ip sport {port} 0xffff flowid 1:20"
    ))
}

fn qdisc_drops() -> String {
    Command::new("tc")
        .args(["-s", "qdisc", "show", "dev", "lo", "parent", "1:20"])
        .output()
        .ok()
        .and_then(|o| {
            let t = String::from_utf8_lossy(&o.stdout).to_string();
            let i = t.find("dropped ")?;
            Some(t[i + 8..].split(',').next()?.to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn sh(cmd: &str) -> Result<(), String> {
    let mut parts = cmd.split_whitespace();
    let prog = parts.next().unwrap_or("true");
    let out = Command::new(prog)
        .args(parts)
        .output()
        .map_err(|e| format!("{cmd}: {e} (install iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
