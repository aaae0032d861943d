//! Clients, slow, silent, hostile or many: a disconnect inside a frame, one that never
//! reads, slowloris, malformed and absurd requests, more clients than `--max-clients`, an
//! idle flood, one host holding every slot, a tab closed on a slow link (in a network
//! namespace of its own), stalled Unix-socket viewers, and stopping with 500 clients. Each
//! asserts that the fault stays with its client: another viewer is served live, and threads
//! and descriptors return to where they were.

use mjpeg_relay::testjpeg::is_whole_jpeg;
use mjpeg_testkit::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// A relay with the test pattern and a viewer that keeps receiving, to check others stay live.
fn pattern(extra: &[&str]) -> (Relay, StreamClient, (usize, usize)) {
    let mut args = vec!["--fps", "20", "--size", "160x120"];
    args.extend_from_slice(extra);
    Relay::with_viewer(&args)
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
    expect_whole_frames(&mut viewer, 5);
    let log = relay.log_text();
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    relay.settles_to(base);
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
    expect_whole_frames(&mut viewer, 5);
    drop(stalled);
    relay.settles_to(base);
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
    let answer = read_to_close(slow);
    assert!(
        cut || answer.starts_with("HTTP/1.1 408"),
        "slowloris got: {answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A request that stops half way.
    let mut half = TcpStream::connect(&relay.http).unwrap();
    half.write_all(b"GET /status HTTP/1.1\r\nHost:").unwrap();
    let answer = read_to_close(half);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    expect_whole_frames(&mut viewer, 5);
    relay.settles_to(base);
}

#[test]
fn oversized_malformed_pipelined_and_absurd_requests() {
    let (relay, mut viewer, base) = pattern(&[]);
    let ask = |raw: Vec<u8>| {
        let mut s = TcpStream::connect(&relay.http).unwrap();
        let _ = s.write_all(&raw);
        let _ = s.shutdown(Shutdown::Write);
        read_to_close(s)
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
    expect_whole_frames(&mut viewer, 5);
    relay.settles_to(base);
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
        if read_to_close(s).starts_with("HTTP/1.1 503") {
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
    expect_whole_frames(&mut viewer, 5);
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
    relay.settles_to(base);
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
        let answer = read_to_close(s);
        assert!(answer.starts_with("HTTP/1.1 200"), "from {from}: {answer}");
    }
    let mut second = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    assert!(second.next_frame(Duration::from_secs(5)).is_some());
    expect_whole_frames(&mut viewer, 5);
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
    relay.settles_to(base);
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
    expect_whole_frames(&mut viewer, 10);
    let mut relay = relay;
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "the relay exited"
    );
}

#[test]
fn absurd_fps_caps_are_refused_and_the_relay_lives_on() {
    let relay = Relay::start(&["--fps", "10", "--size", "160x120"]);
    // 1e-300 panicked in Duration::from_secs_f64, 1e-19 overflowed an Instant.
    for fps in [
        "1e-300", "1e-19", "0.001", "0", "-1", "nan", "inf", "1e400", "2000",
    ] {
        let (code, _, body) = get(&relay.http, &format!("/stream?fps={fps}"));
        assert_eq!(code, 400, "?fps={fps}: {}", String::from_utf8_lossy(&body));
    }
    // The bounds themselves are fine, and mean what they say beyond the first frame (which
    // is always sent at once): 0.01 fps sends nothing more for seconds, 1000 fps is the
    // source's rate (10 fps here: about 20 frames in 2 s).
    let mut slow = StreamClient::open(&relay.http, "/stream?fps=0.01", "curl/8.0", None);
    let first = slow
        .next_frame(Duration::from_secs(5))
        .expect("the first frame");
    let mut fast = StreamClient::open(&relay.http, "/stream?fps=1000", "curl/8.0", None);
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(2) {
        if fast.next_frame(Duration::from_secs(1)).is_some() {
            n += 1;
        }
    }
    assert!(
        (15..=25).contains(&n),
        "?fps=1000: {n} frames in 2 s at a 10 fps source"
    );
    assert!(
        slow.next_frame(Duration::from_millis(1500)).is_none(),
        "?fps=0.01 sent a second frame within 4 s"
    );
    assert!(is_whole_jpeg(&first));
    relay.assert_alive();
}

#[test]
fn unix_socket_clients_are_dropped_after_the_send_timeout() {
    // Accepted Unix sockets do not inherit SO_SNDTIMEO: a never-reading client stayed 8 s
    // with --send-timeout 1, its thread blocked in a write.
    let dir = TempDir::new("unix-timeout");
    let sock = dir.0.join("http.sock").display().to_string();
    let relay = Relay::start_unix(
        &sock,
        &["--send-timeout", "1", "--fps", "30", "--size", "640x480"],
    );
    let mut s = UnixStream::connect(&sock).unwrap();
    send_get(&mut s, "/stream", "curl/8.0");
    let started = Instant::now();
    assert!(
        relay.wait_log(
            "could not take a frame within --send-timeout",
            Duration::from_secs(6)
        ),
        "{}",
        relay.log_text()
    );
    // One second of no progress, plus a frame interval or two.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    drop(s);
}

/// `/status`'s client list, asked from 127.0.0.3 (127.0.0.1 may be at its cap).
fn clients_of(relay: &Relay) -> Vec<serde_json::Value> {
    status_from_elsewhere(relay)["streams"][0]["clients"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `/status` asked from 127.0.0.3, which the hogs of 127.0.0.1 do not count against.
fn status_from_elsewhere(relay: &Relay) -> serde_json::Value {
    let mut s = bound_to("127.0.0.3", &relay.http);
    send_get(&mut s, "/status", "curl/8.0");
    let (code, _, body, _) = read_head(&mut s);
    assert_eq!(code, 200);
    let mut body = body;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut body);
    serde_json::from_slice(&body).expect("status JSON")
}

/// Item 6: one host opening `?fps=0.01` streams that it never reads cannot take every slot
/// (`--max-clients-per-ip`, half of `--max-clients` by default), and a paced client that
/// closes is gone at once, not after its 100 s sleep.
#[test]
fn one_host_cannot_hold_every_slot_and_paced_clients_leave_at_once() {
    let relay = Relay::start(&[
        "--max-clients",
        "20",
        "--fps",
        "5",
        "--size",
        "160x120",
        "--status-details",
    ]);
    let hog = |_| {
        let mut s = bound_to("127.0.0.1", &relay.http);
        send_get(&mut s, "/stream?fps=0.01", "curl/8.0");
        s
    };
    let mut hogs: Vec<TcpStream> = (0..20).map(hog).collect();
    std::thread::sleep(Duration::from_millis(500));
    // The cap engaged: 10 of the 20 were refused, and said so.
    let listed = clients_of(&relay).len();
    assert_eq!(listed, 10, "{:?}", clients_of(&relay));
    assert!(relay.wait_log("(--max-clients-per-ip)", Duration::from_secs(2)));
    // Issue 32: counted by reason, each of the ten (the log says it once): past the per-address
    // cap, or, for one that came while eight of its address were still sending their request,
    // at accept (the pending budget per address).
    let refused = &status_from_elsewhere(&relay)["refused"];
    let n = |r: &str| refused[r].as_u64().unwrap_or(0);
    assert_eq!(n("max_clients_per_ip") + n("pending"), 10, "{refused}");
    assert!(n("max_clients_per_ip") >= 1, "{refused}");
    assert_eq!(n("max_clients"), 0, "{refused}");
    // A viewer from another address gets its stream.
    let mut s = bound_to("127.0.0.2", &relay.http);
    send_get(&mut s, "/stream", "curl/8.0");
    let (code, _, _, _) = read_head(&mut s);
    assert_eq!(code, 200);
    let mut body = Vec::new();
    let mut buf = [0u8; 8192];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while !body.windows(2).any(|w| w == [0xFF, 0xD9]) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        body.extend_from_slice(&buf[..n]);
    }
    drop(s);

    // Paced clients sleep up to 100 s between frames; one that closes leaves now. The
    // control: the ones that stay open are still listed after the same wait.
    let listed: Vec<String> = clients_of(&relay)
        .iter()
        .filter_map(|c| c["address"].as_str().map(String::from))
        .collect();
    let before = hogs
        .iter()
        .filter(|h| listed.contains(&h.local_addr().unwrap().to_string()))
        .count();
    assert_eq!(before, 10);
    let mut open_hogs = Vec::new();
    let mut closed = 0;
    for h in hogs.drain(..) {
        let served = listed.contains(&h.local_addr().unwrap().to_string());
        if served && closed < 5 {
            closed += 1;
            drop(h);
        } else {
            open_hogs.push(h);
        }
    }
    assert_eq!(closed, 5);
    let t = Instant::now();
    while clients_of(&relay).len() > before - 5 {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "closed paced clients still listed after 1 s: {:?}",
            clients_of(&relay)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(clients_of(&relay).len(), before - 5, "the open ones stay");
    drop(open_hogs);
}

/// Item 5: a tab closed on a slow link. The viewer's kernel resets the connection while the
/// relay's thread waits in the in-flight bound for unacknowledged bytes to drain; it must
/// notice and leave `/status` within 1 s, not wait out `--send-timeout` as a ghost. The
/// control: a viewer that stops reading but does not close stays listed for the same time.
#[test]
fn a_closed_tab_on_a_slow_link_leaves_no_ghost() {
    if mjpeg_testkit::reexec_in_netns() {
        return;
    }
    sh("ip link set lo up");
    let relay = Relay::start(&["--fps", "15", "--send-timeout", "10"]);
    // The viewer's own port, so that only what is sent to it crosses the 2 Mbit/s link.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let vport = probe.local_addr().unwrap().port();
    drop(probe);
    mjpeg_testkit::shape_port(vport, "2mbit");
    let sock = connect_from("127.0.0.1", vport, &relay.http, Some(16 * 1024));
    let mut viewer = sock;
    send_get(&mut viewer, "/stream", "curl/8.0");
    viewer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let t = Instant::now();
    let mut got = 0;
    while t.elapsed() < Duration::from_secs(2) {
        got += viewer.read(&mut buf).unwrap();
    }
    assert!(got > 100_000, "the link carried {got} bytes in 2 s");
    // Stop reading: the relay's thread is now waiting for its bytes in flight to drain.
    std::thread::sleep(Duration::from_millis(1500));
    let listed = |relay: &Relay| {
        relay.status()["streams"][0]["clients_connected"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        listed(&relay),
        1,
        "the control: a viewer that only stopped reading stays"
    );
    // Close the tab: a reset, as a browser's kernel sends for a socket closed with unread data.
    close_with_reset(viewer);
    let closed = Instant::now();
    while listed(&relay) > 0 {
        assert!(
            closed.elapsed() < Duration::from_secs(1),
            "a reset viewer is still in /status after 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "reset viewer gone from /status after {} ms",
        closed.elapsed().as_millis()
    );
    drop(relay);

    // The bound's own "did not drain" path (the loopback tests never reach it: there a
    // stalled client blocks in write first): a viewer on the slow link that stops reading
    // and stays connected is dropped after --send-timeout, with that reason.
    let relay = Relay::start(&["--fps", "15", "--send-timeout", "3"]);
    let mut viewer = connect_from("127.0.0.1", vport, &relay.http, Some(16 * 1024));
    send_get(&mut viewer, "/stream", "curl/8.0");
    viewer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        assert!(viewer.read(&mut buf).unwrap() > 0);
    }
    let stopped = Instant::now();
    assert!(
        relay.wait_log(
            "did not drain within --send-timeout",
            Duration::from_secs(8)
        ),
        "{}",
        relay.log_text()
    );
    let took = stopped.elapsed();
    eprintln!(
        "stalled viewer on the slow link dropped after {} ms",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_millis(2500),
        "{took:?}: before --send-timeout"
    );
    assert_eq!(listed(&relay), 0);
    drop(viewer);
    let _ = sh_quiet("tc qdisc del dev lo root");
}

fn sh_quiet(cmd: &str) -> bool {
    let mut parts = cmd.split_whitespace();
    Command::new(parts.next().unwrap())
        .args(parts)
        .output()
        .is_ok_and(|o| o.status.success())
}
