//! `--fallback`: an edge relay that loses its origin switches to another, and back, while its
//! viewers stay connected (issue 16, first part). Origins are relays on loopback, told apart by
//! picture size.

use mjpeg_testkit::*;
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
