//! Every page in the browsers users have: Chromium, Firefox ESR and WebKitGTK (Safari's
//! engine, as on an iPad or iPhone), each driven by its own vendor's protocol (see
//! `testkit/src/browser.rs`). One test per engine walks what a user does (issue 21): the
//! twelve-camera dashboard (one camera without upstream), the status page, the relay
//! restarting under the dashboard, leaving the page and coming back, and opening a stream's
//! URL directly; the pages ask for their sizes, paint a webcam's frames at a smaller size,
//! replay and save the last seconds. In Chromium also: each dashboard tile paints where the
//! page says, the viewer page reconnects by itself, twelve `<img>` tags through nginx's
//! HTTP/2, a camera on its fallback, and `/status` read from another origin. Each claim has its
//! control: the multipart framing the dashboard used before (blank in WebKit), a still
//! picture for "the picture moves", HTTP/1.1 for the twelve tags. How soon a frame is painted
//! is `tests/paint.rs`.

use mjpeg_testkit::browser::{chromium_console, png_to_rgb, Engine, Page, CHROMIUM_FLAGS};
use mjpeg_testkit::*;
use serde_json::Value;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// One browser at a time: three engines and twelve cameras at once would measure the test
/// machine's two cores, not the page.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The dashboard's counters per camera: parts received, pictures painted, the state label.
const TILES_JS: &str = "const t = window.mjpegRelayTiles; if (!t) return null; \
    return Object.fromEntries(Object.entries(t).map(([n, v]) => \
    [n, {received: v.received, painted: v.painted, state: v.state.textContent}]));";

/// Twelve cameras, 320x240 at 8 fps; the twelfth a `tcp-listen` with no upstream. On `port`,
/// so that a restart comes back at the same address.
fn twelve(port: u16) -> Relay {
    let mut args: Vec<String> = vec!["--http".into(), format!("127.0.0.1:{port}")];
    for i in 1..=12 {
        let spec = if i == 12 {
            "tcp-listen:127.0.0.1:0"
        } else {
            "testsrc"
        };
        args.extend(["--stream".into(), format!("cam{i:02}={spec}")]);
    }
    args.extend(["--fps", "8", "--size", "320x240", "--no-signal-after", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Relay::start(&args)
}

fn tiles(page: &mut Page) -> Value {
    page.js(TILES_JS)
}

fn count(v: &Value, cam: &str, what: &str) -> u64 {
    v[cam][what].as_u64().unwrap_or(0)
}

/// Waits until `cam`'s counter `what` passes `above`; how long that took, or `None` by `limit`.
fn until_more(
    page: &mut Page,
    cam: &str,
    what: &str,
    above: u64,
    limit: Duration,
) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        let v = tiles(page);
        if count(&v, cam, what) > above {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Parts of each camera the relay has written to its `/mux` viewers, from `/status`.
fn server_parts(relay: &Relay) -> Vec<u64> {
    let st = relay.status();
    st["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["clients"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["layout"] == "mux")
                .map(|c| c["frames_sent"].as_u64().unwrap())
                .sum()
        })
        .collect()
}

/// A PNG screenshot as RGB (decoded by ffmpeg), and how many of its pixels differ from
/// another one's.
fn differing(a: &[u8], b: &[u8]) -> usize {
    let rgb = |png: &[u8]| {
        let dir = TempDir::new("shot");
        let p = dir.0.join("s.png");
        std::fs::write(&p, png).unwrap();
        run_with_timeout(
            std::process::Command::new("ffmpeg")
                .args(["-loglevel", "error", "-i"])
                .arg(&p)
                .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]),
            Duration::from_secs(20),
        )
        .stdout
    };
    let (a, b) = (rgb(a), rgb(b));
    assert_eq!(a.len(), b.len(), "screenshots of one size");
    assert!(!a.is_empty(), "a screenshot decoded");
    a.chunks(3).zip(b.chunks(3)).filter(|(x, y)| x != y).count()
}

/// Opens `url`, and counts the pixels that change between two screenshots 2 s apart.
fn changed_over_2s(page: &mut Page, url: &str) -> usize {
    page.go(url);
    std::thread::sleep(Duration::from_secs(1));
    let a = page.screenshot();
    std::thread::sleep(Duration::from_secs(2));
    differing(&a, &page.screenshot())
}

/// What a user of `engine` sees, measured; see the module docs. Returns the row of the
/// closing note's table.
fn walk_through(engine: Engine) -> String {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("ffmpeg");
    let port = free_port();
    let relay = twelve(port);
    let base = format!("http://127.0.0.1:{port}");
    let mut page = Page::start(engine);
    let name = engine.name();

    // The dashboard: every tile painted, >= 80% of each camera's 8 fps over 10 s, counted in
    // the page and on the server; the camera without upstream says NO SIGNAL.
    page.go(&format!("{base}/"));
    assert!(
        until_more(&mut page, "cam01", "painted", 0, Duration::from_secs(20)).is_some(),
        "{name}: the dashboard painted nothing: {}",
        tiles(&mut page)
    );
    std::thread::sleep(Duration::from_secs(1));
    let (a, sa) = (tiles(&mut page), server_parts(&relay));
    std::thread::sleep(Duration::from_secs(10));
    let (b, sb) = (tiles(&mut page), server_parts(&relay));
    let mut rates = Vec::new();
    for i in 1..=11 {
        let cam = format!("cam{i:02}");
        let got = count(&b, &cam, "received") - count(&a, &cam, "received");
        let painted = count(&b, &cam, "painted") - count(&a, &cam, "painted");
        let sent = sb[i - 1] - sa[i - 1];
        assert!(
            got >= 64,
            "{name}: {cam} received {got} parts in 10 s (>= 64 wanted): {b}"
        );
        // Painting is the engine's decoding, on the test machine's two loaded cores: every
        // tile keeps painting, at most of the rate.
        assert!(
            painted >= 48,
            "{name}: {cam} painted {painted} in 10 s: {b}"
        );
        assert!(
            sent >= 64,
            "{name}: the relay wrote {sent} parts of {cam} in 10 s"
        );
        rates.push(got as f64 / 10.0);
    }
    let state12 = b["cam12"]["state"].as_str().unwrap_or("").to_string();
    assert!(
        state12.contains("NO SIGNAL"),
        "{name}: cam12 says '{state12}'"
    );
    assert!(
        count(&b, "cam12", "painted") > 0,
        "{name}: cam12 shows its NO SIGNAL picture"
    );
    let min_rate = rates.iter().cloned().fold(f64::MAX, f64::min);

    // The status page, for a person: a section per stream that says what it is doing.
    page.go(&format!("{base}/status"));
    let sections_js = "return [...document.querySelectorAll('section')]\
        .map(s => [s.dataset.name, s.className, s.textContent]);";
    let deadline = Instant::now() + Duration::from_secs(10);
    let sections = loop {
        let v = page.js(sections_js);
        if v.as_array().is_some_and(|a| a.len() == 12) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the status page shows {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = |cam: &str| {
        sections
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s[0] == cam)
            .map(|s| {
                (
                    s[1].as_str().unwrap().to_string(),
                    s[2].as_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    let (class1, text1) = text("cam01");
    assert!(
        text1.contains("source live") && text1.contains("frames in"),
        "{name}: {text1}"
    );
    assert_eq!(class1, "", "{name}: cam01 is not marked as a problem");
    let (class12, text12) = text("cam12");
    assert!(
        text12.contains("NO SIGNAL") && class12 == "bad",
        "{name}: {class12} {text12}"
    );
    page.go(&format!("{base}/"));
    assert!(
        until_more(&mut page, "cam01", "painted", 0, Duration::from_secs(20)).is_some(),
        "{name}: the dashboard again"
    );

    // The relay restarts on the same port: live again without a reload.
    let before = count(&tiles(&mut page), "cam01", "received");
    drop(relay);
    std::thread::sleep(Duration::from_millis(300));
    let restarted = Instant::now();
    let relay = twelve(port);
    let back = until_more(
        &mut page,
        "cam01",
        "received",
        before,
        Duration::from_secs(10),
    )
    .map(|_| restarted.elapsed())
    .unwrap_or_else(|| panic!("{name}: not live again 10 s after the restart"));
    assert!(
        back <= Duration::from_secs(3),
        "{name}: live again after {back:?}"
    );

    // Leaving the page and coming back (the back/forward cache where the engine has one):
    // live again within 2 s, without a reload.
    page.go(&format!("{base}/cam01/"));
    std::thread::sleep(Duration::from_millis(1500));
    // On the way: a camera's viewer page is titled by its camera and links back to the list.
    let v = page.js("const l = document.getElementById('list'); \
         return [document.title, !!l && !l.hidden, l ? l.getAttribute('href') : null];");
    assert_eq!(v[0], "cam01 · mjpeg-relay", "{name}: {v}");
    assert_eq!(v[1], true, "{name}: no way back to the list: {v}");
    page.back();
    let returned = Instant::now();
    let before = count(&tiles(&mut page), "cam01", "received");
    let restore = until_more(
        &mut page,
        "cam01",
        "received",
        before,
        Duration::from_secs(10),
    )
    .map(|_| returned.elapsed())
    .unwrap_or_else(|| panic!("{name}: not live again 10 s after coming back"));
    assert!(
        restore <= Duration::from_secs(2),
        "{name}: live again after {restore:?}"
    );

    // A stream URL opened directly: a picture that moves (iOS paints the first part of a
    // multipart document and stops). The control: a still picture, /snapshot, shows no change
    // in the same two screenshots, so "it moved" is not an artefact of the screenshots.
    let moved = changed_over_2s(&mut page, &format!("{base}/cam01/stream"));
    let still = changed_over_2s(&mut page, &format!("{base}/cam01/snapshot"));
    assert!(
        moved > 1000,
        "{name}: /stream opened directly: {moved} pixels changed in 2 s"
    );
    assert_eq!(still, 0, "{name}: a still picture changed {still} pixels");
    drop(relay);
    let row = format!(
        "| {name} | 11/11 live, cam12 NO SIGNAL | {min_rate:.1} | {:.2} s | {:.2} s | live ({moved} px changed in 2 s) |",
        back.as_secs_f64(),
        restore.as_secs_f64()
    );
    eprintln!("{row}");
    row
}

#[test]
fn chromium_dashboard_restart_return_and_direct_stream() {
    walk_through(Engine::Chromium);
}

#[test]
fn firefox_dashboard_restart_return_and_direct_stream() {
    walk_through(Engine::Firefox);
}

#[test]
fn webkit_dashboard_restart_return_and_direct_stream() {
    walk_through(Engine::WebKit);
}

/// The control for the dashboard: the multipart framing it used before, which WebKit's
/// `fetch()` does not stream to a script ("Load failed"): nothing arrives. The same page in
/// Chromium gets the parts, so the control fails for the reason it claims.
#[test]
fn webkit_cannot_stream_the_multipart_framing_to_a_script() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let _relay = twelve(port);
    let url = format!("http://127.0.0.1:{port}/?muxframing=multipart");
    let mut chromium = Page::start(Engine::Chromium);
    chromium.go(&url);
    assert!(
        until_more(
            &mut chromium,
            "cam01",
            "received",
            0,
            Duration::from_secs(15)
        )
        .is_some(),
        "Chromium streams the multipart form"
    );
    drop(chromium);
    let mut webkit = Page::start(Engine::WebKit);
    webkit.go(&url);
    std::thread::sleep(Duration::from_secs(6));
    let v = tiles(&mut webkit);
    let got: u64 = (1..=11)
        .map(|i| count(&v, &format!("cam{i:02}"), "received"))
        .sum();
    eprintln!("WebKitGTK, multipart framing: {got} parts in 6 s");
    assert_eq!(
        got, 0,
        "WebKit streamed the multipart framing after all: {v}"
    );
}

/// Issue 25, the pages: the dashboard asks each camera at the size of its tile (two 1280x720
/// cameras in tiles about 330 px wide: the 1/2 size, 640x360), and the viewer page asks for
/// `?size=auto` and says in its corner what it gets (the camera's size on loopback), or the
/// size given to it. The control: `?sizes=full` makes the dashboard ask for the cameras'
/// frames, and it gets them.
fn pages_ask_for_their_sizes(engine: Engine) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let relay = Relay::start(&[
        "--stream",
        "big=testsrc",
        "--stream",
        "wide=testsrc",
        "--size",
        "1280x720",
        "--fps",
        "5",
    ]);
    let sizes_of_viewers = |relay: &Relay| -> Vec<String> {
        let st = relay.status();
        st["streams"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["clients"].as_array().cloned().unwrap_or_default())
            .map(|c| c["size"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let mut page = Page::start(engine);
    let until = |page: &mut Page, js: &str, want: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = page.js(js);
            if want(&v) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    for (query, want) in [("", "1/2"), ("?sizes=full", "full")] {
        page.go(&format!("http://{}/{query}", relay.http));
        let v = until(&mut page, TILES_JS, &|v| count(v, "wide", "painted") > 2);
        assert!(count(&v, "big", "painted") > 0, "{}: {v}", engine.name());
        let sizes = sizes_of_viewers(&relay);
        eprintln!("{}: dashboard{query}: viewers at {sizes:?}", engine.name());
        assert_eq!(sizes, [want, want], "{}: dashboard{query}", engine.name());
    }
    let label = "const e = document.getElementById('size'); return e ? e.textContent : ''";
    for (query, want) in [("", "1280×720 · auto"), ("?width=320", "320×180")] {
        page.go(&format!("http://{}/big/{query}", relay.http));
        let v = until(&mut page, label, &|v| v.as_str() == Some(want));
        eprintln!("{}: viewer page{query}: corner says {v}", engine.name());
        assert_eq!(
            v.as_str(),
            Some(want),
            "{}: viewer page{query}",
            engine.name()
        );
    }
}

#[test]
fn chromium_pages_ask_for_their_sizes() {
    pages_ask_for_their_sizes(Engine::Chromium);
}

#[test]
fn firefox_pages_ask_for_their_sizes() {
    pages_ask_for_their_sizes(Engine::Firefox);
}

#[test]
fn webkit_pages_ask_for_their_sizes() {
    pages_ask_for_their_sizes(Engine::WebKit);
}

/// Issue 30 item 2 in the browsers: a USB webcam's frames (no Huffman tables) are painted at
/// smaller sizes, made by the relay with the standard tables, on the viewer page (its corner
/// reads the painted picture's own size: 160×120 and 80×60 of the camera's 640x480). (The
/// relay before the tables made nothing of them: the page stayed empty.)
fn webcam_frames_are_painted_at_a_smaller_size(engine: Engine) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let relay = Relay::start(&[
        "--stream",
        "webcam=tcp-listen:127.0.0.1:0",
        "--stream",
        "other=testsrc",
    ]);
    let frames = mjpeg_testkit::webcam_frames(30);
    let mut up = std::net::TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // 10 frames a second for at most two minutes, or until the test is done.
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        for f in frames.iter().cycle().take(1200) {
            if stop2.load(std::sync::atomic::Ordering::SeqCst)
                || up.write_all(&mjpeg_testkit::gst_part(f)).is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut page = Page::start(engine);
    let label = "const e = document.getElementById('size'); return e ? e.textContent : ''";
    for (width, want) in [(160, "160×120"), (80, "80×60")] {
        page.go(&format!("http://{}/webcam/?width={width}", relay.http));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut v = page.js(label);
        while v.as_str() != Some(want) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
            v = page.js(label);
        }
        eprintln!(
            "{}: webcam at ?width={width}: corner says {v}",
            engine.name()
        );
        assert_eq!(v.as_str(), Some(want), "{}: ?width={width}", engine.name());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = feeder.join();
}

#[test]
fn chromium_paints_webcam_frames_at_a_smaller_size() {
    webcam_frames_are_painted_at_a_smaller_size(Engine::Chromium);
}

#[test]
fn firefox_paints_webcam_frames_at_a_smaller_size() {
    webcam_frames_are_painted_at_a_smaller_size(Engine::Firefox);
}

#[test]
fn webkit_paints_webcam_frames_at_a_smaller_size() {
    webcam_frames_are_painted_at_a_smaller_size(Engine::WebKit);
}

/// Issue 34: the viewer page's "replay last 10 s" and "save last 30 s", and the capture time
/// in its corner, in each engine. The relay's log shows the replay it served; the saved file
/// is fetched from the link as the browser would, and is an AVI. The control: with
/// `--history 0` both controls stay hidden.
fn replay_and_save(engine: Engine) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let relay = Relay::start(&["--fps", "10", "--size", "320x240"]);
    let mut page = Page::start(engine);
    page.go(&format!("http://{}/", relay.http));
    let shown = "return [document.getElementById('replay').hidden, \
        document.getElementById('save').hidden, document.getElementById('time').textContent];";
    let deadline = Instant::now() + Duration::from_secs(15);
    let v = loop {
        let v = page.js(shown);
        if v[0] == false && v[2].as_str().is_some_and(|t| t.len() >= 8) {
            break v;
        }
        assert!(Instant::now() < deadline, "{}: {v}", engine.name());
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(v[1], false, "{}: save hidden: {v}", engine.name());
    let time = v[2].as_str().unwrap().to_string();
    assert!(
        time.len() == 8 && time.chars().filter(|c| *c == ':').count() == 2,
        "{}: the corner says '{time}'",
        engine.name()
    );
    // Replay: the relay serves the history first to the page's new stream, and the corner
    // says so. (The paint counter is not read here: Firefox's canvas does not follow a
    // multipart <img>; the dashboard test counts Firefox's paints its own way.)
    std::thread::sleep(Duration::from_secs(3)); // three seconds of history at least
    page.js("document.getElementById('replay').click(); return true;");
    assert!(
        relay.wait_log("frames replayed first", Duration::from_secs(10)),
        "{}: no replay served: {}",
        engine.name(),
        relay.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = page.js(shown);
        if v[2] == "replay" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: after replay: {v}",
            engine.name()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Save: the link's file, fetched as the page would.
    let saved = page.js(
        "const a = document.getElementById('save'); const x = new XMLHttpRequest(); \
         x.open('GET', a.href, false); x.overrideMimeType('text/plain; charset=x-user-defined'); \
         x.send(); return [x.status, x.getResponseHeader('Content-Type'), \
         x.getResponseHeader('Content-Disposition'), x.responseText.length, \
         x.responseText.slice(0, 4), a.hasAttribute('download')];",
    );
    assert_eq!(saved[0], 200, "{}: {saved}", engine.name());
    assert_eq!(saved[1], "video/x-msvideo", "{}: {saved}", engine.name());
    assert!(saved[2].as_str().unwrap_or("").contains(".avi"), "{saved}");
    assert!(saved[3].as_u64().unwrap_or(0) > 10_000, "{saved}");
    assert_eq!(saved[4], "RIFF", "{saved}");
    assert_eq!(saved[5], true, "{saved}");
    drop(page);

    // The control: no history, no controls.
    let bare = Relay::start(&["--fps", "10", "--size", "320x240", "--history", "0"]);
    let mut page = Page::start(engine);
    page.go(&format!("http://{}/", bare.http));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = page.js(shown);
        if v[2].as_str().is_some_and(|t| t.len() >= 8) {
            assert_eq!(
                (&v[0], &v[1]),
                (&Value::Bool(true), &Value::Bool(true)),
                "{v}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{}: {v}", engine.name());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn chromium_replays_and_saves_the_last_seconds() {
    replay_and_save(Engine::Chromium);
}

#[test]
fn firefox_replays_and_saves_the_last_seconds() {
    replay_and_save(Engine::Firefox);
}

#[test]
fn webkit_replays_and_saves_the_last_seconds() {
    replay_and_save(Engine::WebKit);
}

/// CORS from a real page of another origin (issue 13): with `--allow-origin` that origin's
/// script may read `/status`, but never with the browser's credentials (no
/// `Access-Control-Allow-Credentials`); without the flag (the control) it may not read it at
/// all. The page is served by a second relay's `--static`, on another port: another origin.
#[test]
fn chromium_reads_status_cross_origin_only_when_allowed_and_never_with_credentials() {
    let dir = TempDir::new("cors-page");
    std::fs::write(
        dir.0.join("cors.html"),
        r#"<!doctype html><script>
const q = new URLSearchParams(location.search);
async function attempt(label, target, opts) {
  try {
    const r = await fetch(target + "/status", opts);
    const j = await r.json();
    console.log(`cors ${label} read ${j.version}`);
  } catch (e) {
    console.log(`cors ${label} blocked`);
  }
}
(async () => {
  await attempt("allowed", q.get("allowed"), {});
  await attempt("allowed-credentials", q.get("allowed"), { credentials: "include" });
  await attempt("not-allowed", q.get("other"), {});
  console.log("cors done");
})();
</script>"#,
    )
    .unwrap();
    let root = dir.0.display().to_string();
    let page = Relay::start(&["--static", &root, "--fps", "2", "--size", "160x120"]);
    let origin = format!("http://{}", page.http);
    let allowed = Relay::start(&["--allow-origin", &origin, "--fps", "2", "--size", "160x120"]);
    let other = Relay::start(&["--fps", "2", "--size", "160x120"]);
    let url = format!(
        "{origin}/cors.html?allowed=http://{}&other=http://{}",
        allowed.http, other.http
    );
    let (_browser, lines) = chromium_console(&url, 640, 480);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("cors done")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, line) = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the page did not finish: {seen:#?}"));
        if line.contains("cors ") {
            seen.push(line);
        }
    }
    let has = |needle: &str| seen.iter().any(|l| l.contains(needle));
    assert!(has("cors allowed read "), "{seen:#?}");
    assert!(has("cors allowed-credentials blocked"), "{seen:#?}");
    assert!(has("cors not-allowed blocked"), "{seen:#?}");
}

// ------------------------------------------------------------------------------------------
// The dashboard: many cameras on one page, over one connection (/mux)

/// The newest `mjpeg-relay tiles {...}` line of the index page (`?tilelog=1`), parsed.
fn tiles_line(line: &str) -> Option<serde_json::Value> {
    let json = line.split("mjpeg-relay tiles ").nth(1)?;
    // Chromium quotes the console message and appends `", source: …`.
    let json = json.rsplit_once("\", source:").map_or(json, |(j, _)| j);
    serde_json::from_str(&json.replace("\\\"", "\"")).ok()
}

/// Reads tile counters from the page for `secs` seconds: (first line after `settle`, last).
fn tile_counters(
    lines: &mpsc::Receiver<(SystemTime, String)>,
    settle: Duration,
    secs: u64,
) -> (serde_json::Value, serde_json::Value) {
    let start = Instant::now();
    let mut first = None;
    let mut last = None;
    while start.elapsed() < settle + Duration::from_secs(secs) {
        let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(2)) else {
            continue;
        };
        let Some(v) = tiles_line(&line) else {
            continue;
        };
        if start.elapsed() >= settle && first.is_none() {
            first = Some(v);
        } else if first.is_some() {
            last = Some(v);
        }
    }
    (
        first.expect("no tile counters from the page"),
        last.expect("no tile counters from the page"),
    )
}

/// A headless Chromium screenshot of `url` after ~5 s of (virtual) time, as RGB.
fn chromium_screenshot(url: &str, w: usize, h: usize) -> Vec<u8> {
    let profile = TempDir::new("chromium-shot");
    let shot = profile.0.join("shot.png");
    run_with_timeout(
        Command::new("chromium")
            .args(CHROMIUM_FLAGS)
            .arg("--virtual-time-budget=5000")
            .arg(format!("--window-size={w},{h}"))
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(url),
        Duration::from_secs(60),
    );
    assert!(shot.exists(), "chromium made no screenshot");
    png_to_rgb(&shot, w, h)
}

/// Twelve cameras (the last one `tcp-listen` with no upstream when `one_down`), small, 8 fps.
fn twelve_cameras(one_down: bool) -> Relay {
    let mut args: Vec<String> = Vec::new();
    for i in 1..=12 {
        let spec = if one_down && i == 12 {
            "tcp-listen:127.0.0.1:0".to_string()
        } else {
            "testsrc".to_string()
        };
        args.extend(["--stream".into(), format!("cam{i:02}={spec}")]);
    }
    args.extend(["--fps", "8", "--size", "160x120", "--no-signal-after", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Relay::start(&args)
}

fn dashboard_check(one_down: bool) {
    require_tool("ffmpeg");
    let relay = twelve_cameras(one_down);
    let url = format!("http://{}/?tilelog=1", relay.http);
    // The screenshot below is taken at this size too, so the tile positions the page reports
    // are where the tiles are in it.
    let (w, h) = (1400, 1100);
    let (_browser, lines) = chromium_console(&url, w, h);
    let (a, b) = tile_counters(&lines, Duration::from_secs(3), 10);
    let obj = b.as_object().unwrap();
    assert_eq!(obj.len(), 12, "{b}");
    for (name, t) in obj {
        let down = one_down && name == "cam12";
        let received = t["received"].as_u64().unwrap() - a[name]["received"].as_u64().unwrap();
        let painted = t["painted"].as_u64().unwrap();
        let state = t["state"].as_str().unwrap_or_default();
        eprintln!("{name}: {received} parts in ~10 s, {painted} painted, state {state:?}");
        assert!(painted > 0, "{name} was never painted: {t}");
        if down {
            assert!(state.contains("NO SIGNAL"), "{name}: {t}");
        } else {
            // 8 fps for 10 s: at least 90% of the 80 frames reached the page.
            assert!(received >= 72, "{name}: {received} parts in 10 s: {t}");
            assert_eq!(state, "live", "{name}: {t}");
        }
    }
    // One connection carried them all: each camera counts one viewer, the same one.
    let st = relay.status();
    for s in st["streams"].as_array().unwrap() {
        assert_eq!(s["clients_connected"], 1, "{}", s["name"]);
        assert_eq!(s["clients"][0]["layout"], "mux");
    }
    // And a screenshot shows twelve pictures: the centre of every tile is not the black of an
    // unpainted canvas (tile positions from the page itself, same window size).
    assert!(b["cam01"]["rect"][2].as_u64().unwrap() > 100, "{b}");
    let px = chromium_screenshot(&format!("http://{}/", relay.http), w, h);
    let mut pictures = 0;
    for (name, t) in obj {
        let r: Vec<usize> = t["rect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let (cx, cy) = (r[0] + r[2] / 3, r[1] + r[3] / 2);
        let i = (cy * w + cx) * 3;
        let rgb = &px[i..i + 3];
        if rgb.iter().map(|&c| u32::from(c)).sum::<u32>() > 60 {
            pictures += 1;
        } else {
            eprintln!("{name}: dark at ({cx},{cy}): {rgb:?}");
        }
    }
    assert_eq!(pictures, 12, "pictures in the screenshot");
}

/// The camera without upstream (NO SIGNAL) and the relay restarting under the page are walked
/// in all three engines above; this one checks, in Chromium, that each tile
/// paints where the page says it is.
#[test]
fn dashboard_shows_twelve_cameras_live_over_one_connection() {
    dashboard_check(false);
}

/// Kills `relay` without a goodbye, checks that the page then shows nothing new (the control:
/// `live` cannot hold by itself), restarts it with `start` on the same port a second later,
/// and returns how long until the page shows `live` again, without a reload.
fn until_live_after_restart(
    mut relay: std::process::Child,
    start: impl Fn() -> std::process::Child,
    lines: &mpsc::Receiver<(SystemTime, String)>,
    live: impl Fn(&str) -> bool,
) -> Duration {
    relay.kill().unwrap();
    relay.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    while lines.try_recv().is_ok() {}
    let quiet = Instant::now() + Duration::from_millis(700);
    while Instant::now() < quiet {
        if let Ok((_, l)) = lines.recv_timeout(Duration::from_millis(100)) {
            assert!(!live(&l), "the page looked live with the relay gone: {l}");
        }
    }
    let restarted = Instant::now();
    let mut relay = start();
    let mut back = None;
    while restarted.elapsed() < Duration::from_secs(15) {
        if let Ok((_, l)) = lines.recv_timeout(Duration::from_millis(200)) {
            if live(&l) {
                back = Some(restarted.elapsed());
                break;
            }
        }
    }
    let _ = relay.kill();
    let _ = relay.wait();
    back.expect("the page did not come back without a reload")
}

#[test]
fn viewer_page_reconnects_by_itself_when_the_relay_restarts() {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let start = || {
        Command::new(relay_bin())
            .args(["--http", &http, "--fps", "10", "--size", "320x240"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let relay = start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&http).is_err() {
        assert!(Instant::now() < deadline, "relay did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_browser, lines) = chromium_console(&format!("http://{http}/?paintlog=1"), 640, 480);
    let paints = |within: Duration| {
        let end = Instant::now() + within;
        let mut n = 0;
        while Instant::now() < end {
            if let Ok((_, l)) = lines.recv_timeout(Duration::from_millis(200)) {
                n += usize::from(l.contains("mjpeg-relay paint"));
            }
        }
        n
    };
    assert!(
        paints(Duration::from_secs(3)) > 5,
        "the viewer never painted"
    );
    let back = until_live_after_restart(relay, start, &lines, |l| l.contains("mjpeg-relay paint"));
    eprintln!(
        "viewer live again {:.1} s after the relay restarted",
        back.as_secs_f64()
    );
    assert!(back < Duration::from_secs(5), "{back:?}");
}

/// A page of twelve plain `<img src=…/NAME/stream>` tags (what a Home Assistant dashboard or a
/// hand-made page has): over HTTP/1.1 the browser's six-connection limit stalls half of them;
/// through the shipped nginx recipe (TLS, HTTP/2) all twelve are live.
#[test]
fn twelve_img_tags_are_all_live_through_nginx_http2_and_not_over_http1() {
    let dir = TempDir::new("h2");
    let d = |f: &str| dir.0.join(f).display().to_string();
    let www = dir.0.join("www");
    std::fs::create_dir(&www).unwrap();
    let imgs: String = (1..=12)
        .map(|i| format!("<img src=\"/cam{i:02}/stream\" width=80 height=60>"))
        .collect();
    std::fs::write(
        www.join("wall.html"),
        format!(
            r#"<!doctype html><body>{imgs}<script>
// Each img's picture, sampled twice a second: a change is a live stream.
const c = document.createElement("canvas"); c.width = c.height = 8;
const x = c.getContext("2d", {{ willReadFrequently: true }});
const imgs = [...document.images], last = imgs.map(() => ""), changes = imgs.map(() => 0);
setInterval(() => {{
  imgs.forEach((img, i) => {{
    if (!img.naturalWidth) return;
    x.drawImage(img, 0, 0, 8, 8);
    const sig = x.getImageData(0, 0, 8, 8).data.join(",");
    if (sig !== last[i]) {{ last[i] = sig; changes[i]++; }}
  }});
  console.log("wall " + changes.join(" "));
}}, 500);
</script>"#
        ),
    )
    .unwrap();
    let mut args: Vec<String> = Vec::new();
    for i in 1..=12 {
        args.extend(["--stream".into(), format!("cam{i:02}=testsrc")]);
    }
    args.extend(["--fps", "8", "--size", "160x120", "--static"].map(String::from));
    args.push(www.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Behind nginx (Unix socket), and the same relay reachable over plain HTTP/1.1.
    let behind = Relay::start_unix(&d("relay.sock"), &args);
    let (_nginx, port) = nginx_in_front(&dir, &d("relay.sock"));
    let direct = Relay::start(&args);

    let live_imgs = |url: &str| -> usize {
        let (browser, rx) = chromium_console(url, 640, 480);
        // Counts after 8 s: a stream that painted at least 5 new pictures is live.
        let end = Instant::now() + Duration::from_secs(8);
        let mut last = String::new();
        while Instant::now() < end {
            if let Ok((_, l)) = rx.recv_timeout(Duration::from_millis(500)) {
                if let Some(counts) = l.split("wall ").nth(1) {
                    last = counts.split('"').next().unwrap_or("").to_string();
                }
            }
        }
        drop(browser);
        eprintln!("{url}: picture changes per img: {last}");
        last.split_whitespace()
            .filter(|n| n.parse::<u32>().is_ok_and(|n| n >= 5))
            .count()
    };
    let over_h2 = live_imgs(&format!("https://127.0.0.1:{port}/wall.html"));
    let over_h1 = live_imgs(&format!("http://{}/wall.html", direct.http));
    assert_eq!(over_h2, 12, "through nginx with HTTP/2");
    // The control: the same page over HTTP/1.1 stalls past six connections (one is the page).
    assert!(over_h1 <= 6, "{over_h1} live over HTTP/1.1");
    drop(behind);
}

/// Issue 20 item 11: a camera that never answered, fed by its fallback, is live, but the
/// dashboard must not say just "live": its tile says "on fallback" with why. The control: the
/// camera without a fallback next to it says "live".
#[test]
fn dashboard_says_when_a_camera_is_on_its_fallback() {
    let relay = Relay::start(&[
        "--stream",
        "door=http://127.0.0.1:1/video.cgi",
        "--fallback",
        "door=testsrc",
        "--stream",
        "yard=testsrc",
        "--source-timeout",
        "1",
        "--fps",
        "8",
        "--size",
        "160x120",
    ]);
    let url = format!("http://{}/?tilelog=1", relay.http);
    let (_browser, lines) = chromium_console(&url, 640, 480);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(2)) else {
            continue;
        };
        let Some(v) = tiles_line(&line) else {
            continue;
        };
        let door = v["door"]["state"].as_str().unwrap_or("").to_string();
        let yard = v["yard"]["state"].as_str().unwrap_or("").to_string();
        last = v;
        if door.starts_with("on fallback") {
            assert!(door.contains("127.0.0.1:1"), "the tile says why: {door}");
            assert_eq!(yard, "live", "{last}");
            return;
        }
    }
    panic!("the door tile never said 'on fallback': {last}");
}
