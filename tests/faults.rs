//! Hostile and broken input, one test per fault: from the upstream (the parser's cases, end to
//! end) and from clients (slow, silent, oversized, pipelined, flooding). Each asserts that the
//! fault is counted or logged, that another viewer is still served live afterwards, and that
//! threads and file descriptors return to where they were.

use mjpeg_relay::testjpeg::{is_whole_jpeg, seq_of};
use mjpeg_testkit::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

fn fds(relay: &Relay) -> usize {
    relay.fds()
}

/// Waits until the relay's threads and fds are back at (or below) `base`.
fn settles_to(relay: &Relay, base: (usize, usize)) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = (relay.threads(), fds(relay));
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

fn counter(relay: &Relay, name: &str) -> u64 {
    let st = relay.status();
    let src = &st["streams"][0]["source"];
    src[name]
        .as_u64()
        .or_else(|| src["dropped"][name].as_u64())
        .unwrap_or_else(|| panic!("no counter {name} in {src}"))
}

/// A relay with a `tcp-listen` source and a viewer that has seen live frames; returns the
/// baseline threads/fds with that viewer connected.
fn setup(extra: &[&str]) -> (Relay, StreamClient, (usize, usize)) {
    let mut args = vec!["--source", "tcp-listen:127.0.0.1:0"];
    args.extend_from_slice(extra);
    let relay = Relay::start(&args);
    let viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    std::thread::sleep(Duration::from_millis(300));
    let base = (relay.threads(), fds(&relay));
    (relay, viewer, base)
}

/// A fresh upstream sends good frames `first..first+n`; the viewer must get them whole.
fn still_live(relay: &Relay, viewer: &mut StreamClient, first: u64) {
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    for seq in first..first + 5 {
        up.write_all(&gst_part(&frame(seq, 500))).unwrap();
    }
    let got = frames_until(viewer, Duration::from_secs(10), |f| {
        seq_of(f) == Some(first + 4)
    })
    .expect("live frames after the fault");
    assert!(got.iter().all(|f| is_whole_jpeg(f)));
    drop(up);
}

#[test]
fn upstream_disconnect_mid_frame() {
    let (relay, mut viewer, base) = setup(&[]);
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    up.write_all(&gst_part(&frame(1, 500))).unwrap();
    let part = gst_part(&frame(2, 5000));
    up.write_all(&part[..part.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(up);
    assert!(relay.wait_log("waiting for it to reconnect", Duration::from_secs(5)));
    assert_eq!(counter(&relay, "truncated"), 1);
    still_live(&relay, &mut viewer, 10);
    settles_to(&relay, base);
}

#[test]
fn upstream_garbage_between_parts_and_non_jpeg_and_empty_parts() {
    let (relay, mut viewer, base) = setup(&[]);
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    up.write_all(&gst_part(&frame(1, 500))).unwrap();
    up.write_all(b"\x00\x01garbage between parts\r\n\r\nmore\r\n")
        .unwrap();
    up.write_all(b"--spionisto\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello\r\n")
        .unwrap();
    up.write_all(b"--spionisto\r\nContent-Type: image/jpeg\r\nContent-Length: 0\r\n\r\n\r\n")
        .unwrap();
    for seq in 2..6 {
        up.write_all(&gst_part(&frame(seq, 500))).unwrap();
    }
    frames_until(&mut viewer, Duration::from_secs(5), |f| {
        seq_of(f) == Some(5)
    })
    .expect("frames after the bad parts");
    assert!(counter(&relay, "garbage_bytes") >= 20);
    assert!(counter(&relay, "not_jpeg") >= 2, "{}", relay.status());
    drop(up);
    still_live(&relay, &mut viewer, 10);
    settles_to(&relay, base);
}

#[test]
fn upstream_boundary_change_mid_stream() {
    let (relay, mut viewer, base) = setup(&[]);
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    for seq in 1..4 {
        up.write_all(&gst_part(&frame(seq, 500))).unwrap();
    }
    for seq in 4..8 {
        let part = gst_part(&frame(seq, 500));
        let text = String::from_utf8_lossy(&part).replace("--spionisto", "--newboundary");
        let mut p = part.clone();
        // Same bytes with the boundary replaced in the part head only.
        let head_end = memchr::memmem::find(&part, b"\r\n\r\n").unwrap();
        p.splice(..head_end, text.as_bytes()[..head_end + 2].iter().copied());
        up.write_all(&p).unwrap();
    }
    frames_until(&mut viewer, Duration::from_secs(5), |f| {
        seq_of(f) == Some(7)
    })
    .expect("frames under the new boundary");
    assert_eq!(counter(&relay, "boundary_changes"), 1);
    assert!(relay.wait_log("changed its multipart boundary", Duration::from_secs(2)));
    drop(up);
    settles_to(&relay, base);
}

#[test]
fn upstream_content_length_that_lies_both_ways() {
    let (relay, mut viewer, base) = setup(&[]);
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    let lying = |seq: u64, delta: i64| {
        let j = frame(seq, 500);
        let claimed = (j.len() as i64 + delta) as usize;
        let mut part =
            format!("--spionisto\r\nContent-Type: image/jpeg\r\nContent-Length: {claimed}\r\n\r\n")
                .into_bytes();
        part.extend_from_slice(&j);
        part.extend_from_slice(b"\r\n");
        part
    };
    // Claims 100 bytes more than the JPEG: the JPEG's own end marker ends it, so it survives
    // (sent alone, so the viewer cannot skip it for a newer one).
    up.write_all(&lying(1, 100)).unwrap();
    let got = frames_until(&mut viewer, Duration::from_secs(5), |f| {
        seq_of(f) == Some(1)
    })
    .expect("the part whose Content-Length is too long survives");
    assert_eq!(got.last().unwrap(), &frame(1, 500));
    // Claims 100 bytes fewer: cut before its end marker, not a whole JPEG, dropped.
    up.write_all(&lying(2, -100)).unwrap();
    for seq in 3..6 {
        up.write_all(&gst_part(&frame(seq, 500))).unwrap();
    }
    // At most the damaged frame is lost; the next good ones come through.
    let got = frames_until(&mut viewer, Duration::from_secs(5), |f| {
        seq_of(f) == Some(5)
    })
    .expect("frames after the lying parts");
    assert!(got.iter().all(|f| is_whole_jpeg(f)));
    assert!(
        got.iter().all(|f| seq_of(f) != Some(2)),
        "the cut part was shown"
    );
    assert_eq!(counter(&relay, "not_jpeg"), 1);
    drop(up);
    still_live(&relay, &mut viewer, 10);
    settles_to(&relay, base);
}

#[test]
fn upstream_endless_header_line_and_block_are_bounded() {
    let (relay, mut viewer, base) = setup(&[]);
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    up.write_all(&gst_part(&frame(1, 500))).unwrap();
    // A 100 MB header line, then a header block of 10,000 short lines.
    up.write_all(b"--spionisto\r\nX-Junk: ").unwrap();
    let junk = vec![b'a'; 1 << 20];
    for _ in 0..100 {
        up.write_all(&junk).unwrap();
    }
    up.write_all(b"\r\n\r\n").unwrap();
    up.write_all(b"--spionisto\r\n").unwrap();
    for _ in 0..10_000 {
        up.write_all(b"X-More: yes\r\n").unwrap();
    }
    up.write_all(b"\r\n").unwrap();
    for seq in 2..6 {
        up.write_all(&gst_part(&frame(seq, 500))).unwrap();
    }
    frames_until(&mut viewer, Duration::from_secs(20), |f| {
        seq_of(f) == Some(5)
    })
    .expect("frames after the endless headers");
    assert!(
        counter(&relay, "header_too_long") >= 2,
        "{}",
        relay.status()
    );
    // Nothing like 100 MB was buffered.
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", relay.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(rss_kb < 40_000, "RSS {rss_kb} kB");
    drop(up);
    settles_to(&relay, base);
}

#[test]
fn upstream_frame_far_over_the_limit() {
    let (relay, mut viewer, base) = setup(&["--max-frame-bytes", "64K"]);
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    up.write_all(&gst_part(&frame(1, 500))).unwrap();
    up.write_all(&gst_part(&frame(2, 10 << 20))).unwrap(); // 10 MB
    for seq in 3..6 {
        up.write_all(&gst_part(&frame(seq, 500))).unwrap();
    }
    let got = frames_until(&mut viewer, Duration::from_secs(10), |f| {
        seq_of(f) == Some(5)
    })
    .expect("frames after the oversized one");
    assert!(got.iter().all(|f| seq_of(f) != Some(2)));
    assert_eq!(counter(&relay, "oversized"), 1);
    drop(up);
    settles_to(&relay, base);
}

#[test]
fn upstream_connected_but_silent_is_dropped_and_replaced() {
    let (relay, mut viewer, base) = setup(&["--source-timeout", "1"]);
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    up.write_all(&gst_part(&frame(1, 500))).unwrap();
    // Then nothing, with the connection held open.
    assert!(
        relay.wait_log("no whole frame for", Duration::from_secs(5)),
        "{}",
        relay.log_text()
    );
    assert_eq!(relay.status()["streams"][0]["source"]["state"], "lost");
    // The relay closed its end: our read sees EOF (or a reset), not a timeout.
    up.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    match up.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("silent upstream still held by the relay: {other:?}"),
    }
    drop(up);
    still_live(&relay, &mut viewer, 10);
    // still_live's upstream was the second connection (and has left again).
    assert_eq!(counter(&relay, "reconnects"), 1);
    settles_to(&relay, base);
}

// ---------------------------------------------------------------------------------------------
// Client faults

/// A relay with the test pattern and a viewer that keeps receiving, to check others stay live.
fn pattern(extra: &[&str]) -> (Relay, StreamClient, (usize, usize)) {
    let mut args = vec!["--fps", "20", "--size", "160x120"];
    args.extend_from_slice(extra);
    let relay = Relay::start(&args);
    let viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    std::thread::sleep(Duration::from_millis(300));
    let base = (relay.threads(), fds(&relay));
    (relay, viewer, base)
}

fn live(viewer: &mut StreamClient, n: usize) {
    for _ in 0..n {
        let f = viewer
            .next_frame(Duration::from_secs(5))
            .expect("live frame");
        assert!(is_whole_jpeg(&f));
    }
}

fn response_of(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn client_disconnect_mid_frame_is_not_an_error() {
    let (relay, mut viewer, base) = pattern(&["--size", "640x480"]);
    let mut s = TcpStream::connect(&relay.http).unwrap();
    send_get(&mut s, "/stream", "curl/8.0");
    let mut buf = [0u8; 3000];
    s.read_exact(&mut buf).unwrap();
    drop(s); // somewhere inside a frame
    assert!(relay.wait_log("client closed", Duration::from_secs(5)));
    live(&mut viewer, 5);
    let log = relay.log_text();
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    settles_to(&relay, base);
}

#[test]
fn client_that_never_reads_is_dropped_after_the_send_timeout() {
    let (relay, mut viewer, base) = pattern(&["--send-timeout", "1", "--size", "640x480"]);
    let mut stalled = connect(&relay.http, Some(4096));
    send_get(&mut stalled, "/stream", "curl/8.0");
    assert!(
        relay.wait_log("could not take a frame within", Duration::from_secs(10)),
        "{}",
        relay.log_text()
    );
    live(&mut viewer, 5);
    drop(stalled);
    settles_to(&relay, base);
}

#[test]
fn slowloris_and_unfinished_requests_are_cut_off_at_the_header_timeout() {
    let (relay, mut viewer, base) = pattern(&["--header-timeout", "1"]);
    // One byte every 200 ms: never done within 1 s.
    let mut slow = TcpStream::connect(&relay.http).unwrap();
    let started = Instant::now();
    let req = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n\r\n";
    let mut cut = false;
    for b in req {
        if slow.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let answer = response_of(slow);
    assert!(
        cut || answer.starts_with("HTTP/1.1 408"),
        "slowloris got: {answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A request that stops half way.
    let mut half = TcpStream::connect(&relay.http).unwrap();
    half.write_all(b"GET /status HTTP/1.1\r\nHost:").unwrap();
    let answer = response_of(half);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    live(&mut viewer, 5);
    settles_to(&relay, base);
}

#[test]
fn oversized_malformed_pipelined_and_absurd_requests() {
    let (relay, mut viewer, base) = pattern(&[]);
    let ask = |raw: Vec<u8>| {
        let mut s = TcpStream::connect(&relay.http).unwrap();
        let _ = s.write_all(&raw);
        let _ = s.shutdown(Shutdown::Write);
        response_of(s)
    };
    // A 100 KB request line, then 100 headers: 431, without reading it all first.
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100_000));
    assert!(ask(long.into_bytes()).starts_with("HTTP/1.1 431"));
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = ask(format!("GET /status HTTP/1.1\r\n{many}\r\n").into_bytes());
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    // Not HTTP at all (a TLS hello): 400.
    assert!(
        ask(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec())
            .starts_with("HTTP/1.1 400")
    );
    // Two pipelined requests: the first is answered, then the connection closes.
    let r = ask(
        b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
    );
    assert_eq!(r.matches("HTTP/1.1 200").count(), 1, "{r}");
    // Absurd and percent-encoded paths: 404, never a crash.
    for path in [
        "/%00%ff%2e%2e/../..//stream",
        "/stream/../../etc/passwd",
        &format!("/{}", "%41".repeat(3000)),
        "/api/frame.jpeg?src=%2e%2e",
        "*",
    ] {
        let r = ask(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes());
        assert!(
            r.starts_with("HTTP/1.1 404") || r.starts_with("HTTP/1.1 400"),
            "{path}: {r}"
        );
    }
    live(&mut viewer, 5);
    settles_to(&relay, base);
}

#[test]
fn clients_beyond_max_clients_get_503_and_the_log_says_so_once() {
    let (relay, mut viewer, base) = pattern(&[
        "--max-clients",
        "20",
        "--max-clients-per-ip",
        "20",
        "--header-timeout",
        "2",
    ]);
    // 19 more streaming clients fill the limit (the viewer is the 20th).
    let streams: Vec<StreamClient> = (0..19)
        .map(|_| StreamClient::open(&relay.http, "/stream", "curl/8.0", None))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // 100 more: each answered 503 at once.
    let mut refused = 0;
    for _ in 0..100 {
        let mut s = TcpStream::connect(&relay.http).unwrap();
        let _ = s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        if response_of(s).starts_with("HTTP/1.1 503") {
            refused += 1;
        }
    }
    assert_eq!(refused, 100);
    // Threads never exceeded the limit plus the pending budget (16 for this limit).
    assert!(
        relay.threads() <= base.0 + 19 + 16,
        "{} threads",
        relay.threads()
    );
    live(&mut viewer, 5);
    // One line for a hundred refusals (then a summary every 10 s while they go on).
    let log = relay.log_text();
    assert_eq!(log.matches("(--max-clients)").count(), 1, "{log}");
    drop(streams);
    std::thread::sleep(Duration::from_millis(500));
    let (code, _, _) = get(&relay.http, "/status");
    assert_eq!(code, 200);
    // Issue 32: every refusal is counted by its reason, in /status and /metrics (the log
    // said only one line). At accept or after the head, all 100 were over --max-clients.
    let refused = &relay.status()["refused"];
    let n = |r: &str| refused[r].as_u64().unwrap_or(0);
    assert_eq!(n("max_clients") + n("pending"), 100, "{refused}");
    assert_eq!(n("max_clients_per_ip"), 0, "{refused}");
    let (_, _, metrics) = get(&relay.http, "/metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    let line = format!(
        "mjpeg_relay_http_refused_total{{reason=\"max_clients\"}} {}",
        n("max_clients")
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    settles_to(&relay, base);
}

#[test]
fn an_idle_flood_does_not_lock_viewers_out() {
    // Issue 13: with --max-clients 100, 150 idle connections from one host made every viewer
    // get 503 for --header-timeout (10 s).
    let (relay, mut viewer, base) = pattern(&["--max-clients", "100"]);
    let idle: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(&relay.http).unwrap())
        .collect();
    // Idle for longer than a round trip: now they may be closed to make room.
    std::thread::sleep(Duration::from_millis(400));
    // A viewer from the same host and one from another loopback address are served.
    for from in ["127.0.0.1", "127.0.0.2"] {
        let mut s = bound_to(from, &relay.http);
        send_get(&mut s, "/status", "curl/8.0");
        let answer = response_of(s);
        assert!(answer.starts_with("HTTP/1.1 200"), "from {from}: {answer}");
    }
    let mut second = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    assert!(second.next_frame(Duration::from_secs(5)).is_some());
    live(&mut viewer, 5);
    // The flood was real: it filled the thread bound (max-clients + pending budget 25), and
    // the refusals were logged once, not per connection; so were the idle connections closed
    // to make room for the viewers.
    let log = relay.log_text();
    assert_eq!(log.matches("(--max-clients)").count(), 1, "{log}");
    assert_eq!(
        log.matches("closed the oldest unfinished connection")
            .count(),
        1,
        "{log}"
    );
    assert!(
        relay.threads() <= base.0 + 100 + 25,
        "{} threads",
        relay.threads()
    );
    drop(idle);
    drop(second);
    settles_to(&relay, base);
}

#[test]
fn sigterm_with_500_clients_exits_zero_within_two_seconds() {
    // All from 127.0.0.1: lift the per-address cap (half of --max-clients by default).
    let relay = Relay::start(&[
        "--fps",
        "10",
        "--size",
        "160x120",
        "--max-clients-per-ip",
        "1000",
    ]);
    let mut clients = Vec::new();
    for _ in 0..500 {
        let mut s = connect(&relay.http, Some(4096));
        send_get(&mut s, "/stream", "curl/8.0");
        clients.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.status()["streams"][0]["clients_connected"].as_u64() < Some(500) {
        assert!(Instant::now() < deadline, "500 clients did not connect");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut relay = relay;
    relay.signal(libc::SIGTERM);
    let (status, took) = relay.wait_exit(Duration::from_secs(5));
    eprintln!(
        "SIGTERM with 500 clients: exit {:?} after {took:?}",
        status.code()
    );
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn sighup_is_logged_and_ignored_and_sigpipe_never_kills() {
    let (relay, mut viewer, _) = pattern(&[]);
    relay.signal(libc::SIGHUP);
    assert!(relay.wait_log("SIGHUP received and ignored", Duration::from_secs(5)));
    // Writes to clients that vanished raise SIGPIPE unless it is ignored: 20 of them.
    for _ in 0..20 {
        let mut s = TcpStream::connect(&relay.http).unwrap();
        send_get(&mut s, "/stream", "curl/8.0");
        let mut buf = [0u8; 100];
        let _ = s.read(&mut buf);
        drop(s);
    }
    live(&mut viewer, 10);
    let mut relay = relay;
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "the relay exited"
    );
}
