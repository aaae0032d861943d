//! External programs the suite runs: a missing one named with its Debian package, a
//! command with a time limit, helpers (nginx, ...) killed when dropped, temporary
//! directories, free ports, and the processes a test left behind.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

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
