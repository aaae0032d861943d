//! Real browsers, driven the way their vendors' tools drive them, so one test body runs in the
//! three engines users have: Chromium (chromedriver, headless), WebKitGTK's MiniBrowser
//! (WebKitWebDriver on a virtual X display: Safari's engine, as close as Debian gets) and
//! Firefox ESR (its built-in Marionette protocol on a virtual X display: Debian has no
//! geckodriver). All of them from Debian's packages, talking to the relay on 127.0.0.1.

use crate::{free_port, require_tool, run_with_timeout, TempDir};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// Headless Chromium as this machine's closed network needs it (no background connections),
/// as root (no sandbox); self-signed certificates accepted for the nginx tests.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--ignore-certificate-errors",
];

/// The three engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Chromium,
    Firefox,
    WebKit,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Chromium, Engine::Firefox, Engine::WebKit];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "Chromium",
            Engine::Firefox => "Firefox ESR",
            Engine::WebKit => "WebKitGTK",
        }
    }
}

/// Kills a driver's whole process group (xvfb-run and the browser under it) on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group we created for the driver and its children.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// A W3C WebDriver session (WebKitWebDriver or chromedriver) over HTTP on loopback.
pub struct WebDriver {
    _driver: Group,
    _profile: Option<TempDir>,
    base: String,
    session: String,
}

impl WebDriver {
    /// WebKitGTK's MiniBrowser under Xvfb.
    pub fn webkit() -> WebDriver {
        require_tool("WebKitWebDriver");
        require_tool("xvfb-run");
        let port = free_port();
        let mut cmd = Command::new("xvfb-run");
        cmd.args(["-a", "WebKitWebDriver", &format!("--port={port}")]);
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "webkitgtk:browserOptions": {"binary": minibrowser(), "args": ["--automation"]}
        }}});
        WebDriver::start(cmd, port, caps, None)
    }

    /// Headless Chromium through chromedriver, with a `w` x `h` window.
    pub fn chromium(w: usize, h: usize) -> WebDriver {
        require_tool("chromium");
        require_tool("chromedriver");
        let port = free_port();
        let profile = TempDir::new("chromedriver");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--window-size={w},{h}"));
        args.push(format!("--user-data-dir={}", profile.0.display()));
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"));
        WebDriver::start(cmd, port, caps, Some(profile))
    }

    fn start(
        mut cmd: Command,
        port: u16,
        caps: serde_json::Value,
        profile: Option<TempDir>,
    ) -> WebDriver {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the WebDriver server");
        let mut wd = WebDriver {
            _driver: Group(child),
            _profile: profile,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        wd.session = loop {
            match wd.call("POST", "/session", Some(&caps)) {
                Ok(v) if v["sessionId"].is_string() => {
                    break v["sessionId"].as_str().unwrap().to_string()
                }
                Ok(v) => panic!("no WebDriver session: {v}"),
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "the WebDriver server did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        wd
    }

    /// One WebDriver command; its `value`, or the transport's error.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.base);
        // A WebDriver error is a 4xx/5xx with a JSON body that says what went wrong: read it.
        let resp = match body {
            Some(b) => ureq::post(&url)
                .config()
                .http_status_as_error(false)
                .build()
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            None if method == "GET" => ureq::get(&url)
                .config()
                .http_status_as_error(false)
                .build()
                .call(),
            None => ureq::post(&url)
                .config()
                .http_status_as_error(false)
                .build()
                .header("Content-Type", "application/json")
                .send("{}"),
        };
        let mut resp = resp.map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "HTTP {status}: {}",
                text.chars().take(400).collect::<String>()
            ));
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Ok(v["value"].clone())
    }

    fn session_call(
        &self,
        method: &str,
        what: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let path = format!("/session/{}/{what}", self.session);
        self.call(method, &path, body.as_ref())
            .unwrap_or_else(|e| panic!("WebDriver {what}: {e}"))
    }
}

/// Firefox ESR under Xvfb, driven over Marionette (length-prefixed JSON on a TCP port).
pub struct Gecko {
    /// Firefox and its display, ended when dropped.
    pub process: GeckoProcess,
    pub marionette: Marionette,
}

/// Firefox's process group and profile.
pub struct GeckoProcess {
    _child: Group,
    _profile: TempDir,
}

impl Gecko {
    /// On a 1400 x 1100 virtual screen.
    pub fn start() -> Gecko {
        Gecko::start_sized(1400, 1100)
    }

    pub fn start_sized(w: usize, h: usize) -> Gecko {
        require_tool("firefox-esr");
        require_tool("xvfb-run");
        let profile = TempDir::new("firefox-marionette");
        let port = free_port();
        std::fs::write(
            profile.0.join("user.js"),
            format!("user_pref(\"marionette.port\", {port});\n"),
        )
        .unwrap();
        let child = Command::new("xvfb-run")
            .args(["-a", "-s", &format!("-screen 0 {w}x{h}x24"), "firefox-esr"])
            .args(["--marionette", "--no-remote", "--profile"])
            .arg(&profile.0)
            .arg("about:blank")
            .env_remove("MOZ_HEADLESS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start firefox-esr");
        let mut m = Marionette::connect(port);
        m.cmd(
            "WebDriver:NewSession",
            serde_json::json!({"capabilities": {}}),
        );
        Gecko {
            process: GeckoProcess {
                _child: Group(child),
                _profile: profile,
            },
            marionette: m,
        }
    }
}

/// A Marionette connection.
pub struct Marionette {
    sock: TcpStream,
    id: u64,
}

impl Marionette {
    pub fn connect(port: u16) -> Marionette {
        let deadline = Instant::now() + Duration::from_secs(30);
        let sock = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "Firefox's Marionette port did not open"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut m = Marionette { sock, id: 0 };
        m.read(); // the greeting
        m
    }

    fn read(&mut self) -> serde_json::Value {
        let mut len = Vec::new();
        let mut b = [0u8; 1];
        loop {
            self.sock.read_exact(&mut b).expect("marionette read");
            if b[0] == b':' {
                break;
            }
            len.push(b[0]);
        }
        let n: usize = String::from_utf8(len).unwrap().parse().unwrap();
        let mut body = vec![0u8; n];
        self.sock.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// One command; its result, or a failed test with Marionette's error.
    pub fn cmd(&mut self, name: &str, params: serde_json::Value) -> serde_json::Value {
        self.id += 1;
        let msg = serde_json::json!([0, self.id, name, params]).to_string();
        write!(self.sock, "{}:{msg}", msg.len()).unwrap();
        let reply = self.read();
        assert!(reply[2].is_null(), "{name} failed: {}", reply[2]);
        reply[3].clone()
    }
}

/// A browser showing a page, in any of the three engines.
pub enum Page {
    WebDriver(WebDriver),
    Gecko(Gecko),
}

impl Page {
    /// Starts `engine` (its window about 1400 x 1100) with nothing loaded yet.
    pub fn start(engine: Engine) -> Page {
        match engine {
            Engine::Chromium => Page::WebDriver(WebDriver::chromium(1400, 1100)),
            Engine::WebKit => Page::WebDriver(WebDriver::webkit()),
            Engine::Firefox => Page::Gecko(Gecko::start()),
        }
    }

    /// Navigates to `url` (returns once the page has loaded, as WebDriver defines it).
    pub fn go(&mut self, url: &str) {
        match self {
            Page::WebDriver(w) => {
                w.session_call("POST", "url", Some(serde_json::json!({ "url": url })));
            }
            Page::Gecko(g) => {
                g.marionette
                    .cmd("WebDriver:Navigate", serde_json::json!({ "url": url }));
            }
        }
    }

    /// The browser's Back button.
    pub fn back(&mut self) {
        match self {
            Page::WebDriver(w) => {
                w.session_call("POST", "back", Some(serde_json::json!({})));
            }
            Page::Gecko(g) => {
                g.marionette.cmd("WebDriver:Back", serde_json::json!({}));
            }
        }
    }

    /// Runs `script` (a function body: `return …;`) in the page; what it returned.
    pub fn js(&mut self, script: &str) -> serde_json::Value {
        match self {
            Page::WebDriver(w) => w.session_call(
                "POST",
                "execute/sync",
                Some(serde_json::json!({ "script": script, "args": [] })),
            ),
            Page::Gecko(g) => g.marionette.cmd(
                "WebDriver:ExecuteScript",
                serde_json::json!({ "script": script, "args": [] }),
            )["value"]
                .clone(),
        }
    }

    /// A screenshot of the viewport, PNG.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let b64 = match self {
            Page::WebDriver(w) => w.session_call("GET", "screenshot", None),
            Page::Gecko(g) => g.marionette.cmd(
                "WebDriver:TakeScreenshot",
                serde_json::json!({ "full": false }),
            )["value"]
                .clone(),
        };
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 screenshot").trim())
            .expect("screenshots are base64")
    }
}

/// MiniBrowser lives in an architecture directory, e.g. /usr/lib/x86_64-linux-gnu/.
pub fn minibrowser() -> String {
    std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .map(|d| d.path().join("webkit2gtk-4.1/MiniBrowser"))
        .find(|p| p.is_file())
        .expect("WebKitGTK's MiniBrowser is not installed: it comes with the Debian package 'webkit2gtk-driver' (scripts/test installs it)")
        .display()
        .to_string()
}

/// Headless Chromium started by [`chromium_console`], killed when dropped.
pub struct Browser {
    child: Child,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts headless Chromium on `url` in a `w` x `h` window, without a driver: the page's
/// console lines (Chromium echoes them to stderr) arrive on the returned channel with the
/// instant each was read, for pages that log what they paint.
pub fn chromium_console(
    url: &str,
    w: usize,
    h: usize,
) -> (Browser, mpsc::Receiver<(SystemTime, String)>) {
    require_tool("chromium");
    let profile = TempDir::new("chromium");
    let mut child = Command::new("chromium")
        .args(CHROMIUM_FLAGS)
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--window-size={w},{h}"))
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((SystemTime::now(), line));
        }
    });
    (
        Browser {
            child,
            _profile: profile,
        },
        rx,
    )
}

/// A `w` x `h` PNG screenshot as RGB bytes (decoded by ffmpeg).
pub fn png_to_rgb(shot: &std::path::Path, w: usize, h: usize) -> Vec<u8> {
    let raw = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-loglevel", "error", "-i"])
            .arg(shot)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]),
        Duration::from_secs(20),
    );
    assert_eq!(raw.stdout.len(), w * h * 3, "screenshot size");
    raw.stdout
}
