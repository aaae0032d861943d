//! Real browsers against the real binary: Debian's headless Chromium and Firefox ESR.
//!
//! Chromium: the relay's viewer page (`/?paintlog=1`) draws the `<img>` into a canvas every
//! animation frame and logs each change of picture to the console, which Chromium echoes to
//! stderr; the test timestamps those lines as they arrive. The upstream sends one solid-colour
//! frame per second, so each paint can be matched to the frame that caused it.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PALETTE: [[u8; 3]; 6] = [
    [230, 20, 20],
    [20, 200, 20],
    [20, 20, 230],
    [230, 230, 20],
    [230, 20, 230],
    [20, 230, 230],
];

fn solid_jpeg(rgb: [u8; 3]) -> Vec<u8> {
    let px: Vec<u8> = std::iter::repeat_n(rgb, 64 * 64).flatten().collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&px, 64, 64, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

fn nearest(rgb: [i32; 3]) -> usize {
    (0..PALETTE.len())
        .min_by_key(|&i| {
            (0..3)
                .map(|c| (rgb[c] - i32::from(PALETTE[i][c])).pow(2))
                .sum::<i32>()
        })
        .unwrap()
}

struct Browser {
    child: Child,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts headless Chromium on `url`; its console lines arrive on the returned channel with
/// the instant each was read.
fn chromium(url: &str) -> (Browser, mpsc::Receiver<(Instant, String)>) {
    require_tool("chromium");
    let profile = TempDir::new("chromium");
    let mut child = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=640,480",
        ])
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
            let _ = tx.send((Instant::now(), line));
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

/// Sends `n` solid-colour frames one second apart into the relay's upstream port, once the
/// browser's viewer is connected, and returns the paint delay of each frame in ms.
fn paint_delays(query: &str, n: usize) -> Vec<f64> {
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    // A first frame so the page has a picture; then wait for the browser's stream client.
    up.write_all(&gst_part(&solid_jpeg([0, 0, 0]))).unwrap();
    let url = format!("http://{}/?paintlog=1{query}", relay.http);
    let (_browser, lines) = chromium(&url);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = relay.status();
        let c = &s["streams"][0]["clients"];
        if c.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not open the stream"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let mut sent = Vec::new();
    let start = Instant::now();
    for k in 0..n {
        let due = start + Duration::from_secs(k as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        up.write_all(&gst_part(&solid_jpeg(PALETTE[k % PALETTE.len()])))
            .unwrap();
        sent.push(Instant::now());
    }
    std::thread::sleep(Duration::from_millis(1500));
    // Paint lines: "mjpeg-relay paint rgb=R,G,B t=…", as Chromium logs console messages.
    let mut paints = Vec::new();
    while let Ok((at, line)) = lines.try_recv() {
        let Some(rest) = line.split("mjpeg-relay paint rgb=").nth(1) else {
            continue;
        };
        let rgb: Vec<i32> = rest
            .split_whitespace()
            .next()
            .unwrap()
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        paints.push((at, nearest([rgb[0], rgb[1], rgb[2]]), rgb));
    }
    assert!(!paints.is_empty(), "no paint lines from chromium");
    sent.iter()
        .enumerate()
        .map(|(k, &t)| {
            let colour = k % PALETTE.len();
            let seen = paints
                .iter()
                .find(|(at, c, _)| *at >= t && *c == colour)
                .unwrap_or_else(|| panic!("frame {k} (colour {colour}) never painted: {paints:?}"));
            seen.0.duration_since(t).as_secs_f64() * 1000.0
        })
        .collect()
}

#[test]
fn chromium_paints_each_frame_at_once_with_advance_layout() {
    let delays = paint_delays("", 6);
    eprintln!("chromium paint delay, advance layout (ms): {delays:.1?}");
    for (k, d) in delays.iter().enumerate() {
        assert!(
            *d <= 200.0,
            "frame {k} painted {d:.0} ms after it was sent: {delays:.0?}"
        );
    }
}

#[test]
fn chromium_paints_one_interval_late_with_framed_layout() {
    // Proves the test above can fail: without the advance header block Chromium waits for the
    // next part before it paints, one frame interval (1 s here).
    let delays = paint_delays("&advance_headers=0", 5);
    eprintln!("chromium paint delay, framed layout (ms): {delays:.1?}");
    // The first frame may be pushed out by the 1 s keep-alive repeat instead of a new frame.
    let late = delays.iter().filter(|d| **d >= 800.0).count();
    assert!(
        late >= delays.len() - 1,
        "expected ~1000 ms delays: {delays:.0?}"
    );
}

/// Screenshot of `url` with headless Firefox, as raw RGB via ffmpeg (PNG decoding).
fn firefox_screenshot(url: &str, w: usize, h: usize) -> Vec<u8> {
    require_tool("firefox-esr");
    require_tool("ffmpeg");
    let profile = TempDir::new("firefox");
    let shot = profile.0.join("shot.png");
    let out = run_with_timeout(
        Command::new("firefox-esr")
            .env("MOZ_HEADLESS", "1")
            .args(["--headless", "--no-remote", "--profile"])
            .arg(&profile.0)
            .arg("--window-size")
            .arg(format!("{w},{h}"))
            .arg("--screenshot")
            .arg(&shot)
            .arg(url),
        Duration::from_secs(60),
    );
    assert!(
        shot.exists(),
        "firefox made no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-loglevel", "error", "-i"])
            .arg(&shot)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]),
        Duration::from_secs(20),
    );
    assert_eq!(raw.stdout.len(), w * h * 3, "screenshot size");
    raw.stdout
}

#[test]
fn firefox_viewer_shows_a_moving_stream() {
    let relay = Relay::start(&["--fps", "10", "--size", "320x240"]);
    let url = format!("http://{}/", relay.http);
    let (w, h) = (640, 480);
    let a = firefox_screenshot(&url, w, h);
    let b = firefox_screenshot(&url, w, h);
    // The test pattern's colour bars are on screen (yellow 192,192,0 and cyan 0,192,192)...
    let count = |img: &[u8], c: [u8; 3]| {
        img.chunks(3)
            .filter(|p| (0..3).all(|i| (i32::from(p[i]) - i32::from(c[i])).abs() < 30))
            .count()
    };
    for img in [&a, &b] {
        assert!(count(img, [192, 192, 0]) > 500, "yellow bar visible");
        assert!(count(img, [0, 192, 192]) > 500, "cyan bar visible");
    }
    // ...and the picture moved between the two screenshots.
    let differing = a.chunks(3).zip(b.chunks(3)).filter(|(x, y)| x != y).count();
    assert!(differing > 1000, "only {differing} pixels changed");
    // Both screenshots were served as streams to a browser.
    assert!(relay.log_text().contains("(advance layout)"));
}
