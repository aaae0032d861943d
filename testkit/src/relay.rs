//! The relay binary under test: started on an ephemeral port, its log captured, its
//! `/status` read, stopped (and its process group reaped) when dropped.

use crate::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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

    /// [`start`](Self::start) listening on `http` (e.g. `10.77.0.1:0`, a delay line's end).
    pub fn start_on(http: &str, args: &[&str]) -> Relay {
        Relay::spawn(http, args, Stdio::null())
    }

    /// [`start_on`](Self::start_on) with these environment variables set for the relay alone.
    pub fn start_on_with_env(http: &str, args: &[&str], env: &[(&str, &str)]) -> Relay {
        Relay::spawn_env(http, args, Stdio::null(), env)
    }

    /// As [`Relay::start`], with these environment variables set for the relay alone.
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

    /// A relay started with `args` and a viewer of `/stream` connected to it, with the
    /// [`baseline`](Self::baseline) taken once that viewer is settled: what a fault must leave
    /// as it was.
    pub fn with_viewer(args: &[&str]) -> (Relay, crate::StreamClient, (usize, usize)) {
        let relay = Relay::start(args);
        let viewer = crate::StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
        std::thread::sleep(Duration::from_millis(300));
        let base = relay.baseline();
        (relay, viewer, base)
    }

    /// Its threads and open descriptors now: what [`settles_to`](Self::settles_to) waits
    /// for the relay to come back to after a fault.
    pub fn baseline(&self) -> (usize, usize) {
        (self.threads(), self.fds())
    }

    /// Waits (15 s at most, else panics) until the relay's threads and descriptors are back
    /// at or below `base` ([`baseline`](Self::baseline)): a fault left nothing behind.
    pub fn settles_to(&self, base: (usize, usize)) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now = self.baseline();
            if now.0 <= base.0 && now.1 <= base.1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "threads/fds {now:?} did not return to {base:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Open descriptors of the relay; panics if it is no longer running.
    pub fn fds(&self) -> usize {
        self.assert_alive();
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .expect("relay's /proc/PID/fd")
    }

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

    /// Panics unless the relay process runs (exists and is not a zombie).
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
