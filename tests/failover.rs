//! `--fallback`: an edge relay that loses its origin switches to another, and back, while its
//! viewers stay connected (issue 16, first part); an edge fails over when the camera behind a
//! live origin dies; fallbacks idle on standby; a camera that never answered shows in
//! `/metrics` behind its fallback. Origins are relays on loopback, told apart by picture size.

use mjpeg_relay::testjpeg::{jpeg_with_seq, seq_of};
use mjpeg_testkit::*;
use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// An origin relay on `port`, killed when dropped (also when a test fails).
fn origin(port: u16, size: &str) -> Helper {
    let http = format!("127.0.0.1:{port}");
    let child = Helper::spawn(
        Command::new(relay_bin()).args(["--http", &http, "--fps", "15", "--size", size]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&http).is_err() {
        assert!(Instant::now() < deadline, "origin did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn an_edge_switches_to_its_fallback_origin_and_back_without_viewers_noticing() {
    let (pa, pb) = (free_port(), free_port());
    let mut a = origin(pa, "320x240");
    let _b = origin(pb, "160x120");
    let edge = Relay::start(&[
        "--source",
        &format!("http://127.0.0.1:{pa}/stream"),
        "--fallback",
        &format!("http://127.0.0.1:{pb}/stream"),
    ]);
    let mut viewer = StreamClient::open(&edge.http, "/stream", "curl/8.0", None);
    until_size(&mut viewer, (320, 240), Duration::from_secs(10));
    let st = edge.status();
    let fo = &st["streams"][0]["source"]["failover"];
    assert_eq!(fo["current_index"], 0, "{fo}");
    // The fallback stays disconnected while the primary is up: B has no viewer.
    let (_, _, body) = get(&format!("127.0.0.1:{pb}"), "/status");
    let b_status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(b_status["streams"][0]["clients_connected"], 0);

    // The primary dies: the same viewer gets B's frames, and never NO SIGNAL.
    let killed = Instant::now();
    a.stop();
    let (gap, no_signal) = until_size(&mut viewer, (160, 120), Duration::from_secs(10));
    eprintln!("failover gap: {} ms", gap.as_millis());
    assert!(!no_signal, "NO SIGNAL while the fallback works");
    // At most --source-timeout (5 s) plus a connect; a closed connection is noticed at once.
    assert!(killed.elapsed() < Duration::from_secs(3), "{gap:?}");
    let st = edge.status();
    let fo = &st["streams"][0]["source"]["failover"];
    assert_eq!(fo["current_index"], 1, "{fo}");
    assert_eq!(fo["switches"], 1, "{fo}");
    assert!(
        fo["reason"].as_str().unwrap().contains("switched to"),
        "{fo}"
    );

    // The primary returns: back to it, found by the normal backoff (<= 10 s), same viewer.
    let _a = origin(pa, "320x240");
    let (back, no_signal) = until_size(&mut viewer, (320, 240), Duration::from_secs(15));
    eprintln!("back to the primary after {} ms", back.as_millis());
    assert!(!no_signal);
    let st = edge.status();
    let fo = &st["streams"][0]["source"]["failover"];
    assert_eq!(fo["current_index"], 0, "{fo}");
    assert_eq!(fo["switches"], 2, "{fo}");
    let (_, _, metrics) = get(&edge.http, "/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("mjpeg_relay_source_switches_total{stream=\"default\"} 2"),
        "{metrics}"
    );
    // And the fallback hangs up once it is not needed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, _, body) = get(&format!("127.0.0.1:{pb}"), "/status");
        let b_status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if b_status["streams"][0]["clients_connected"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the fallback stayed connected");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn fallback_flags_are_checked_at_start() {
    for (args, want) in [
        (&["--fallback", "nope"][..], "--fallback"),
        (
            &["--stream", "a=testsrc", "--fallback", "b=testsrc"][..],
            "NAME=SPEC",
        ),
    ] {
        assert_bad_command_line(args, want);
    }
    // Per stream, any kind: a named stream falls back to the test pattern.
    let relay = Relay::start(&[
        "--stream",
        "door=tcp:127.0.0.1:9",
        "--fallback",
        "door=testsrc",
        "--size",
        "160x120",
    ]);
    let mut viewer = StreamClient::open(&relay.http, "/door/stream", "curl/8.0", None);
    let (took, _) = until_size(&mut viewer, (160, 120), Duration::from_secs(10));
    eprintln!(
        "fell back to the test pattern after {} ms",
        took.as_millis()
    );
    let st = relay.status();
    assert_eq!(st["streams"][0]["source"]["failover"]["current_index"], 1);
}

/// gstreamer pushing a 320x240 test picture into `upstream` (HOST:PORT), like a camera.
fn gst_camera(upstream: &str) -> Helper {
    require_tool("gst-launch-1.0");
    let (host, port) = upstream.rsplit_once(':').unwrap();
    Helper::spawn(
        Command::new("gst-launch-1.0").arg("-q").args(
            format!(
                "videotestsrc is-live=true ! video/x-raw,framerate=15/1,width=320,height=240 ! \
             jpegenc ! multipartmux boundary=spionisto ! tcpclientsink host={host} port={port}"
            )
            .split_whitespace(),
        ),
    )
}

/// Item 2: the camera dies behind a live origin. The origin keeps serving its NO SIGNAL
/// picture (marked `X-No-Signal: 1` and `no_signal` in `/status`); the edge treats that as
/// its source being down and switches to its fallback, and back when the camera returns.
#[test]
fn an_edge_fails_over_when_the_camera_behind_a_live_origin_dies() {
    let origin = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let mut camera = gst_camera(origin.upstream.as_ref().unwrap());
    let edge = Relay::start(&[
        "--source",
        &format!("http://{}/stream", origin.http),
        "--fallback",
        "testsrc",
        "--size",
        "160x120",
        "--source-timeout",
        "5",
    ]);
    let mut viewer = StreamClient::open(&edge.http, "/stream", "curl/8.0", None);
    until_size(&mut viewer, (320, 240), Duration::from_secs(15));
    // The control: while the camera is live the edge stays on its primary, and the idle
    // fallback makes no frames (item 3).
    std::thread::sleep(Duration::from_secs(2));
    let st = edge.status();
    let fo = &st["streams"][0]["source"]["failover"];
    assert_eq!(fo["current_index"], 0, "{fo}");
    assert_eq!(fo["chain"][1]["state"], "standby", "{fo}");
    assert_eq!(fo["chain"][1]["frames_in"], 0, "{fo}");

    let killed = Instant::now();
    camera.stop();
    let (gap, dark) = until_size(&mut viewer, (160, 120), Duration::from_secs(15));
    let took = killed.elapsed();
    eprintln!(
        "camera killed -> fallback on the edge's viewer: {} ms",
        took.as_millis()
    );
    assert!(
        took <= Duration::from_secs(7),
        "{gap:?}: over --source-timeout + 2 s"
    );
    assert!(
        !dark,
        "the edge's viewer saw a NO SIGNAL picture although the fallback works"
    );
    let st = edge.status();
    let src = &st["streams"][0]["source"];
    assert_eq!(src["failover"]["current_index"], 1, "{src}");
    assert!(src["failover"]["chain"][0]["frames_in"].as_u64().unwrap() > 0);
    let why = src["failover"]["chain"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("NO SIGNAL"), "{src}");
    let (code, _, snap) = get(&edge.http, "/snapshot");
    assert_eq!(code, 200);
    assert_eq!(mjpeg_relay::jpeg::dimensions(&snap), Some((160, 120)));
    // The origin says so, to programs: in /status and on each part it sends.
    assert_eq!(origin.status()["streams"][0]["no_signal"], true);
    let mut raw = TcpStream::connect(&origin.http).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    send_get(&mut raw, "/stream", "curl/8.0");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("X-No-Signal: 1") && got.len() < 1 << 20 {
        let n = raw.read(&mut buf).expect("origin stream");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }

    // The camera returns: the edge goes back to it.
    let _camera = gst_camera(origin.upstream.as_ref().unwrap());
    let (back, _) = until_size(&mut viewer, (320, 240), Duration::from_secs(15));
    eprintln!(
        "camera back -> primary on the edge's viewer: {} ms",
        back.as_millis()
    );
    assert_eq!(
        edge.status()["streams"][0]["source"]["failover"]["current_index"],
        0
    );
}

fn metric(relay: &Relay, series: &str) -> Option<String> {
    let (_, _, body) = get(&relay.http, "/metrics");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().to_string()))
}

/// The stream 'default''s primary-up and on-fallback series of `/metrics`.
fn fallback_metrics(relay: &Relay) -> (Option<String>, Option<String>) {
    (
        metric(
            relay,
            "mjpeg_relay_failover_member_up{stream=\"default\",member=\"0\"}",
        ),
        metric(relay, "mjpeg_relay_on_fallback{stream=\"default\"}"),
    )
}

/// Item 3: a `testsrc` or `file:` fallback makes no frames while the primary feeds; it starts
/// at once when needed. Item 11: a dead camera behind a fallback shows in `/metrics`.
#[test]
fn idle_fallbacks_make_no_frames_and_a_dead_primary_shows_in_metrics() {
    let dir = TempDir::new("standby-file");
    let rec = dir.0.join("rec.mjpeg");
    let frames: Vec<u8> = (1..=5).flat_map(|s| jpeg_with_seq(s, 100)).collect();
    std::fs::write(&rec, frames).unwrap();
    let relay = Relay::start(&[
        "--source",
        "tcp-listen:127.0.0.1:0",
        "--fallback",
        &format!("file:{}", rec.display()),
        "--fallback",
        "testsrc",
        "--source-timeout",
        "1",
    ]);
    let up = Upstream::start(relay.upstream.as_ref().unwrap(), 15.0, 10_000, 500);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let f = viewer.next_frame(Duration::from_secs(10)).unwrap();
    assert!(seq_of(&f).is_some());
    std::thread::sleep(Duration::from_secs(3));
    let st = relay.status();
    let chain = &st["streams"][0]["source"]["failover"]["chain"];
    for i in [1, 2] {
        assert_eq!(chain[i]["frames_in"], 0, "{chain}");
        assert_eq!(chain[i]["state"], "standby", "{chain}");
    }
    assert_eq!(
        fallback_metrics(&relay),
        (Some("1".into()), Some("0".into())),
        "primary up, on fallback"
    );
    // The control: the primary goes, the first fallback makes frames at once.
    drop(up);
    let deadline = Instant::now() + Duration::from_secs(5);
    while viewer
        .next_frame(Duration::from_secs(5))
        .is_some_and(|f| seq_of(&f).unwrap_or(0) > 5)
    {
        assert!(
            Instant::now() < deadline,
            "the file fallback never fed the stream"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let st = relay.status();
    let chain = &st["streams"][0]["source"]["failover"]["chain"];
    assert!(chain[1]["frames_in"].as_u64().unwrap() > 0, "{chain}");
    assert_eq!(
        chain[2]["frames_in"], 0,
        "the second fallback is still not needed: {chain}"
    );
    assert_eq!(
        fallback_metrics(&relay),
        (Some("0".into()), Some("1".into())),
        "primary up, on fallback"
    );
}

/// Item 11: a camera that never answers, behind a fallback: the switch is counted even though
/// the primary never fed, and `/metrics` says the primary is down and a fallback feeds.
#[test]
fn a_camera_that_never_answered_is_visible_behind_its_fallback() {
    let relay = Relay::start(&[
        "--stream",
        "door=http://127.0.0.1:1/video.cgi",
        "--fallback",
        "door=testsrc",
        "--source-timeout",
        "1",
    ]);
    let mut viewer = StreamClient::open(&relay.http, "/door/stream", "curl/8.0", None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&relay, "mjpeg_relay_on_fallback{stream=\"door\"}").as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "never on the fallback");
        assert!(viewer.next_frame(Duration::from_secs(5)).is_some());
    }
    assert_eq!(
        metric(
            &relay,
            "mjpeg_relay_failover_member_up{stream=\"door\",member=\"0\"}"
        ),
        Some("0".into())
    );
    assert_eq!(
        metric(&relay, "mjpeg_relay_source_switches_total{stream=\"door\"}"),
        Some("1".into())
    );
    let st = relay.status();
    let reason = st["streams"][0]["source"]["failover"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("fed by testsrc") && reason.contains("127.0.0.1:1"),
        "{reason}"
    );
}
