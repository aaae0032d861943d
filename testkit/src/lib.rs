//! Test helpers shared by the relay's integration tests (`tests/`) and the benchmark's
//! (`bench/tests/`): the real binary on ephemeral ports, a paced upstream that writes frames
//! carrying sequence numbers, and plain-socket HTTP clients.
//!
//! A dev-only crate (never published, never installed): it lives in the workspace so the
//! benchmark and the tests share one copy of these helpers instead of each keeping its own.

pub mod browser;
pub mod delayline;
pub mod watch;
use mjpeg_relay::parser::{Event, Parser};
use mjpeg_relay::testjpeg::jpeg_with_seq;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::FromRawFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The relay binary under test: `$MJPEG_RELAY_BIN`, or `mjpeg-relay` beside the running test
/// executable's `deps/` folder (where `cargo test` puts the workspace's binaries). Cargo only
/// gives a package's own tests the path of its binary (`CARGO_BIN_EXE_…`); this helper serves
/// the benchmark's tests too, so it finds the binary the way cargo lays out a target folder.
pub fn relay_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("MJPEG_RELAY_BIN") {
            return p.to_string_lossy().into_owned();
        }
        let exe = std::env::current_exe().expect("path of the test executable");
        // target/<profile>/deps/<test>-<hash> -> target/<profile>/mjpeg-relay
        let bin = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|dir| dir.join("mjpeg-relay"))
            .expect("test executable inside a cargo target folder");
        assert!(
            bin.is_file(),
            "{} is missing: run the tests with `cargo test --workspace` (scripts/test), which \
             builds the relay, or set MJPEG_RELAY_BIN",
            bin.display()
        );
        bin.to_string_lossy().into_owned()
    })
}

/// The relay binary, running. Killed on drop.
pub struct Relay {
    pub child: Child,
    /// `127.0.0.1:PORT` of the HTTP side.
    pub http: String,
    /// `127.0.0.1:PORT` of a `tcp-listen` source, if any.
    pub upstream: Option<String>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    /// Starts the binary with `--http 127.0.0.1:0` plus `args`, and waits until it serves.
    pub fn start(args: &[&str]) -> Relay {
        Relay::start_with_stdin(args, Stdio::null())
    }

    pub fn start_with_stdin(args: &[&str], stdin: impl Into<Stdio>) -> Relay {
        Relay::spawn("127.0.0.1:0", args, stdin.into())
    }

    /// Serving HTTP on a Unix socket; `http` is then the socket's path.
    pub fn start_unix(sock: &str, args: &[&str]) -> Relay {
        Relay::spawn(&format!("unix:{sock}"), args, Stdio::null())
    }

    /// As [`Relay::start`], with these environment variables set for the relay alone.
    /// [`start`](Self::start) listening on `http` (e.g. `10.77.0.1:0`, a delay line's end).
    pub fn start_on(http: &str, args: &[&str]) -> Relay {
        Relay::spawn(http, args, Stdio::null())
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Relay {
        Relay::spawn_env("127.0.0.1:0", args, Stdio::null(), env)
    }

    fn spawn(http_arg: &str, args: &[&str], stdin: Stdio) -> Relay {
        Relay::spawn_env(http_arg, args, stdin, &[])
    }

    fn spawn_env(http_arg: &str, args: &[&str], stdin: Stdio, env: &[(&str, &str)]) -> Relay {
        let mut child = Command::new(relay_bin())
            .args(["--http", http_arg])
            .args(args)
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mjpeg-relay");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("RELAY_LOG").is_some() {
                    eprintln!("relay: {line}");
                }
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut http = None;
        let mut upstream = None;
        let wants_upstream = args.iter().any(|a| a.contains("tcp-listen:"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.is_none() || (wants_upstream && upstream.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("relay did not start; log: {:?}", log.lock().unwrap()));
            if let Some(rest) = line
                .split("serving http://")
                .nth(1)
                .or_else(|| line.split("serving https://").nth(1))
            {
                http = Some(rest.split('/').next().unwrap().to_string());
            }
            if let Some(rest) = line.split("serving unix:").nth(1) {
                http = Some(rest.split(' ').next().unwrap().to_string());
            }
            if let Some(rest) = line.split("waiting for the upstream on tcp ").nth(1) {
                upstream = Some(rest.trim().to_string());
            }
        }
        Relay {
            child,
            http: http.unwrap(),
            upstream,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, _, body) = get(&self.http, "/status");
        assert_eq!(code, 200);
        serde_json::from_slice(&body).expect("status is JSON")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Threads of the relay process, from /proc.
    /// Threads of the relay; panics if the relay is no longer running (a crashed relay must
    /// never pass a check that its threads went back down).
    pub fn threads(&self) -> usize {
        self.assert_alive();
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .map(|d| d.count())
            .expect("relay's /proc/PID/task")
    }

    /// Open descriptors of the relay; panics if it is no longer running.
    pub fn fds(&self) -> usize {
        self.assert_alive();
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .expect("relay's /proc/PID/fd")
    }

    /// Panics unless the relay process runs (exists and is not a zombie).
    /// Thread names of its transcoders (`tier-STREAM-N`), sorted.
    pub fn transcoders(&self) -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return Vec::new();
        };
        let mut names: Vec<String> = tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|c| c.trim().to_string())
            .filter(|c| c.starts_with("tier-"))
            .collect();
        names.sort();
        names
    }

    pub fn assert_alive(&self) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .unwrap_or_else(|_| panic!("the relay is gone; log: {}", self.log_text()));
        let state = stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start())
            .unwrap_or("");
        assert!(
            !state.starts_with('Z') && !state.starts_with('X'),
            "the relay exited; log: {}",
            self.log_text()
        );
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits up to `limit` for the relay to exit; its status and how long it took, or a
    /// failed test if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s, t.elapsed());
            }
            assert!(t.elapsed() < limit, "relay still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Padding for frame `seq`, so frame sizes vary.
pub fn pad_for(seq: u64, base: usize) -> usize {
    base + (seq as usize * 7919) % 2000
}

/// The frame the test upstream sends as number `seq`.
pub fn frame(seq: u64, base: usize) -> Vec<u8> {
    jpeg_with_seq(seq, pad_for(seq, base))
}

/// One multipart part as gstreamer's multipartmux writes it.
pub fn gst_part(jpeg: &[u8]) -> Vec<u8> {
    let mut part = format!(
        "--spionisto\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    )
    .into_bytes();
    part.extend_from_slice(jpeg);
    part.extend_from_slice(b"\r\n");
    part
}

/// A paced upstream pushing frames `1..=count` into a `tcp-listen` source at `fps`.
pub struct Upstream {
    /// Sequence number of the newest frame written completely.
    pub sent: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
    pub handle: Option<JoinHandle<u64>>,
}

impl Upstream {
    pub fn start(addr: &str, fps: f64, count: u64, base: usize) -> Upstream {
        Upstream::start_from(addr, fps, 1, count, base)
    }

    pub fn start_from(addr: &str, fps: f64, first: u64, count: u64, base: usize) -> Upstream {
        let mut sock = TcpStream::connect(addr).expect("connect to the relay's upstream port");
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (sent2, stop2) = (sent.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let interval = Duration::from_secs_f64(1.0 / fps);
            for (i, seq) in (first..first + count).enumerate() {
                if stop2.load(SeqCst) {
                    break;
                }
                let due = start + interval * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if sock.write_all(&gst_part(&frame(seq, base))).is_err() {
                    break;
                }
                sent2.store(seq, SeqCst);
            }
            sent2.load(SeqCst)
        });
        Upstream {
            sent,
            stop,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> u64 {
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

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
        write!(
            sock,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n\r\n"
        )
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

/// Runs `cmd` with a time limit and returns its output.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Drain both pipes while waiting: a child whose output outgrows the pipe buffer (64 KiB)
    // would otherwise block on write and never exit.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The Debian package that provides each program the suite runs. `scripts/test` installs
/// exactly these packages (keep the two lists in step).
pub const TOOL_PACKAGES: &[(&str, &str)] = &[
    ("gst-launch-1.0", "gstreamer1.0-tools"),
    ("ffmpeg", "ffmpeg"),
    ("curl", "curl"),
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
    ("firefox-esr", "firefox-esr"),
    ("WebKitWebDriver", "webkit2gtk-driver"),
    ("xvfb-run", "xvfb"),
    ("xauth", "xauth"),
    ("nginx", "nginx"),
    ("openssl", "openssl"),
    ("python3", "python3"),
    ("tc", "iproute2"),
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
    ("haproxy", "haproxy"),
];

/// Fails clearly if a tool the suite needs is missing, naming the Debian package to install
/// (the suite never skips: a test that silently passes without its tool proves nothing).
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain(["/usr/sbin".into(), "/sbin".into()])
                .any(|d| d.join(name).is_file())
        })
        .unwrap_or(false);
    let package = TOOL_PACKAGES
        .iter()
        .find(|(tool, _)| *tool == name)
        .map_or(name, |(_, p)| *p);
    assert!(
        found,
        "'{name}' is not installed. It comes with the Debian package '{package}': \
         run scripts/test (it installs every package the suite needs), or \
         sudo apt-get install {package}"
    );
}

pub fn stdin_pipe(child: &mut Child) -> ChildStdin {
    child.stdin.take().unwrap()
}

/// A free TCP port on 127.0.0.1 (bound, read, released: racy in theory, fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A helper process (gstreamer, ffmpeg) killed on drop.
pub struct Helper(pub Child);

impl Helper {
    pub fn spawn(cmd: &mut Command) -> Helper {
        let quiet = std::env::var_os("RELAY_LOG").is_none();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if quiet {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        Helper(child)
    }

    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Live (non-zombie) processes whose command line contains `marker`, or whose process group
/// is `pgid`.
pub fn live_processes(marker: &str, pgid: Option<i32>) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") {
            continue;
        }
        let pgrp: i32 = f.get(2).and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if (cmdline.contains(marker) && pid != std::process::id() as i32) || Some(pgrp) == pgid {
            out.push((pid, cmdline));
        }
    }
    out
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

/// A directory removed on drop, unique per call.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "mjpeg-relay-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The relay refuses `args` at start with exit code 2 and a message containing `want`.
pub fn assert_bad_command_line(args: &[&str], want: &str) {
    let out = run_with_timeout(
        Command::new(relay_bin()).args(args),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
}

/// nginx configured by the shipped recipe (`scripts/nginx/mjpeg-relay.conf`, TLS and HTTP/2
/// on), with only the relay's socket, a fresh self-signed certificate and a free port put in;
/// in `dir`, in the foreground, stopped with the returned helper. Returns it and the port.
pub fn nginx_in_front(dir: &TempDir, relay_sock: &str) -> (Helper, u16) {
    require_tool("openssl");
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "nginx is not installed: it comes with the Debian package 'nginx' (scripts/test \
             installs it)",
        );
    let d = |f: &str| dir.0.join(f).display().to_string();
    let gen = run_with_timeout(
        Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &d("key.pem"),
            "-out",
            &d("cert.pem"),
        ]),
        Duration::from_secs(30),
    );
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let port = free_port();
    let recipe = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/nginx/mjpeg-relay.conf"
    );
    let site = std::fs::read_to_string(recipe)
        .unwrap()
        .replace("/run/mjpeg-relay/http.sock", relay_sock)
        .replace("/etc/ssl/certs/mjpeg-relay.pem", &d("cert.pem"))
        .replace("/etc/ssl/private/mjpeg-relay.key", &d("key.pem"))
        .replace("listen 443 ", &format!("listen 127.0.0.1:{port} "));
    std::fs::write(d("site.conf"), site).unwrap();
    let main = format!(
        "daemon off; master_process off; pid {pid}; error_log {err} warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{ access_log off; client_body_temp_path {t}; proxy_temp_path {t};\n\
         fastcgi_temp_path {t}; uwsgi_temp_path {t}; scgi_temp_path {t};\n\
         include {site}; }}\n",
        pid = d("nginx.pid"),
        err = d("nginx-error.log"),
        t = d("tmp"),
        site = d("site.conf"),
    );
    std::fs::write(d("nginx.conf"), main).unwrap();
    let helper = Helper::spawn(Command::new(nginx).args([
        "-c",
        &d("nginx.conf"),
        "-e",
        &d("nginx-error.log"),
    ]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(d("nginx-error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (helper, port)
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

/// Runs test `name` of the calling test binary again inside a private network namespace
/// (`unshare --net`, with `--map-root-user` when not root), so shaping its loopback touches
/// nothing of the machine's; `marker` is the environment variable that tells the copy it is
/// inside. Returns false when already inside (the caller then runs the test body), true after
/// the copy passed (it panics when the copy failed, with the copy's output).
pub fn reexec_in_netns(marker: &str, name: &str) -> bool {
    if std::env::var_os(marker).is_some() {
        return false;
    }
    require_tool("unshare");
    require_tool("tc");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = Command::new("unshare");
    cmd.arg("--net");
    if !root {
        cmd.arg("--map-root-user");
    }
    let out = run_with_timeout(
        cmd.arg(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads", "1"])
            .env(marker, "1")
            .env("MJPEG_RELAY_BIN", relay_bin()),
        Duration::from_secs(150),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    assert!(
        out.status.success() && text.contains("1 passed"),
        "in the namespace: {text}"
    );
    true
}

/// Runs `cmd` (words split on white space, no shell); panics with its stderr if it fails.
pub fn sh(cmd: &str) {
    let mut parts = cmd.split_whitespace();
    let out = Command::new(parts.next().unwrap())
        .args(parts)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Inside a namespace of the test's own: traffic to local port `dport` through an htb class at
/// `rate` (e.g. `2mbit`) with a 100-packet queue; everything else at full speed. Loopback is
/// brought up with a real link's MTU first.
pub fn shape_port(dport: u16, rate: &str) {
    sh("ip link set lo up");
    sh("ip link set lo mtu 1500");
    sh("tc qdisc add dev lo root handle 1: htb default 10 r2q 1000");
    sh("tc class add dev lo parent 1: classid 1:10 htb rate 10gbit");
    sh(&format!(
        "tc class add dev lo parent 1: classid 1:20 htb rate {rate}"
    ));
    sh("tc qdisc add dev lo parent 1:20 handle 20: pfifo limit 100");
    sh(&format!(
        "tc filter add dev lo protocol ip parent 1: prio 1 u32 match ip dport {dport} 0xffff flowid 1:20"
    ));
}

/// A 640x480 picture (the relay's test pattern), numbered `seq` in a COM segment as the
/// other test frames are ([`mjpeg_relay::testjpeg::seq_of`] reads it back).
pub fn vga(seq: u64) -> Vec<u8> {
    use std::sync::OnceLock;
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let mut px = vec![0u8; 640 * 480 * 3];
        mjpeg_relay::source::testsrc::render(&mut px, 640, 480, 3);
        mjpeg_relay::source::testsrc::encode(&px, 640, 480).unwrap()
    });
    mjpeg_relay::testjpeg::tagged(base, seq.to_string().as_bytes(), 0)
}

/// `jpeg` without its DHT segments, as a UVC webcam sends MJPEG (the AVI1 convention).
pub fn without_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while jpeg[i] == 0xFF && jpeg[i + 1] != 0xDA {
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if jpeg[i + 1] != 0xC4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpeg[i..]);
    out
}

pub fn has_huffman_tables(jpeg: &[u8]) -> bool {
    mjpeg_relay::jpeg::segments(jpeg).any(|(m, _)| m == 0xC4)
}

/// `n` frames as a USB webcam sends them: ffmpeg's 640x480 MJPEG with the standard Huffman
/// tables (`-huffman default`), the tables then taken out.
pub fn webcam_frames(n: usize) -> Vec<Vec<u8>> {
    require_tool("ffmpeg");
    let out = run_with_timeout(
        Command::new("ffmpeg").args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x480:rate=10",
            "-frames:v",
            &n.to_string(),
            "-c:v",
            "mjpeg",
            "-huffman",
            "default",
            "-q:v",
            "5",
            "-f",
            "mjpeg",
            "-",
        ]),
        Duration::from_secs(30),
    );
    let mut parser = Parser::new(8 << 20);
    let mut made = Vec::new();
    parser.push(&out.stdout, &mut |e| {
        if let Event::Frame(f) = e {
            made.push(without_huffman_tables(&f));
        }
    });
    assert!(made.len() + 5 >= n, "{} frames from ffmpeg", made.len());
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_debian_package() {
        let e = std::panic::catch_unwind(|| require_tool("xvfb-run-that-is-not-there"))
            .expect_err("a missing tool fails");
        let msg = e.downcast_ref::<String>().unwrap();
        assert!(msg.contains("sudo apt-get install"), "{msg}");
        // Every program the suite runs maps to a package that scripts/test installs.
        let script =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test"))
                .unwrap();
        for (tool, package) in TOOL_PACKAGES {
            assert!(
                script.contains(&format!(" {package}")) || script.contains(&format!("({package}")),
                "{tool}: package {package} is not in scripts/test"
            );
        }
        require_tool("sh");
    }
}
