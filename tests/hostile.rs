//! Hostile and careless input, round two (issue 13): each test here failed on the code before
//! the fix it names. Needs only Rust and `sh`.

use mjpeg_relay::testjpeg::{is_whole_jpeg, seq_of};
use mjpeg_testkit::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn raw(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

#[test]
fn a_tiny_jpeg_with_a_comment_first_does_not_break_status_or_snapshot() {
    // 26 bytes: SOI, a COM segment right after it, a scan, EOI. The NO SIGNAL check sliced
    // [6..27] of it, and every /status and /snapshot panicked while it was the newest frame.
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x04, b'h', b'i'];
    jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02]);
    jpeg.extend_from_slice(&[0x11; 12]);
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    assert_eq!(jpeg.len(), 26);
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    up.write_all(&gst_part(&jpeg)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.status()["streams"][0]["source"]["frames_in"] != 1 {
        assert!(Instant::now() < deadline, "the frame did not arrive");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..3 {
        let (code, _, body) = get(&relay.http, "/snapshot");
        assert_eq!(code, 200);
        assert_eq!(body, jpeg);
        assert_eq!(relay.status()["streams"][0]["no_signal"], false);
    }
    relay.assert_alive();
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

#[test]
fn without_auth_only_ip_and_localhost_hosts_are_answered() {
    let relay = Relay::start(&[
        "--fps",
        "5",
        "--size",
        "160x120",
        "--allow-host",
        "cam.local",
    ]);
    let port = relay.http.rsplit(':').next().unwrap().to_string();
    let ask = |host: &str| {
        status_line(&raw(
            &relay.http,
            &format!("GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        ))
        .to_string()
    };
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".into(),
        "localhost".into(),
        format!("LOCALHOST:{port}"),
        "cam.localhost".into(),
        "[::1]:8080".into(),
        "10.1.2.3".into(),
        "cam.local:8080".into(),
        "CAM.LOCAL".into(),
    ] {
        assert!(ask(&host).contains(" 200 "), "Host: {host}: {}", ask(&host));
    }
    // A name the user did not allow: what a DNS-rebinding page would send.
    let answer = raw(
        &relay.http,
        "GET /snapshot HTTP/1.1\r\nHost: attacker.example:8080\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("--allow-host attacker.example"), "{answer}");
    for host in ["evil.example", "localhost.evil.example", "127.0.0.1.nip.io"] {
        assert!(ask(host).contains(" 403 "), "Host: {host}");
    }
    // Many of them: one log line.
    assert_eq!(relay.log_text().matches("refused Host").count(), 1);
    // With authentication the check is not needed (the page cannot log in): any Host.
    let locked = Relay::start(&["--fps", "5", "--size", "160x120", "--token", "s3cret-token"]);
    let answer = raw(
        &locked.http,
        "GET /status?token=s3cret-token HTTP/1.1\r\nHost: cams.example.org\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn tokens_are_percent_decoded_and_carried_through_every_link() {
    // A base64-style token: '/', '+' and '=' must be encoded in a URL, and were never decoded.
    let token = "ab/cd+ef==gh";
    let relay = Relay::start(&[
        "--stream",
        "door=testsrc",
        "--stream",
        "yard=testsrc",
        "--fps",
        "5",
        "--size",
        "160x120",
        "--token",
        token,
    ]);
    let enc = "ab%2Fcd%2Bef%3D%3Dgh";
    assert_eq!(get(&relay.http, &format!("/status?token={enc}")).0, 200);
    assert_eq!(get(&relay.http, "/status?token=wrong-token").0, 401);
    // The index page opened with the token hands it on to every stream, page and link.
    let (code, _, body) = get(&relay.http, &format!("/?token={enc}"));
    assert_eq!(code, 200);
    let page = String::from_utf8(body).unwrap();
    for url in [
        format!("/door/snapshot?token={enc}"),
        format!("/yard/snapshot?token={enc}"),
        format!("/door/?token={enc}"),
        format!("/status?token={enc}"),
        // The /mux connection the page opens.
        format!("const token = \"?token={enc}\""),
    ] {
        assert!(page.contains(&url), "{url} not in the index page:\n{page}");
    }
    let mut c = StreamClient::open(
        &relay.http,
        &format!("/mux?token={enc}&streams=door"),
        "curl/8.0",
        None,
    );
    assert!(c.next_frame(Duration::from_secs(5)).is_some());
    // Failed logins: one log line for many, never the token itself. The wrong token above
    // was the address's first failure: four more are checked (401), then it waits (429).
    let codes: Vec<u16> = (0..20)
        .map(|_| get(&relay.http, "/status?token=guess-guess").0)
        .collect();
    assert_eq!(codes[..4], [401; 4], "{codes:?}");
    assert!(codes[4..].iter().all(|&c| c == 429), "{codes:?}");
    let log = relay.log_text();
    assert_eq!(log.matches("wrong credentials").count(), 1, "{log}");
    assert!(
        !log.contains("guess-guess") && !log.contains(token),
        "{log}"
    );
}

#[test]
fn static_files_never_serve_dotfiles_and_every_response_says_nosniff() {
    let dir = TempDir::new("static-dot");
    std::fs::write(dir.0.join("index.html"), "<p>hi</p>").unwrap();
    std::fs::write(dir.0.join(".htpasswd"), "admin:secret").unwrap();
    std::fs::create_dir(dir.0.join(".git")).unwrap();
    std::fs::write(dir.0.join(".git").join("config"), "[core]").unwrap();
    std::os::unix::fs::symlink(dir.0.join(".htpasswd"), dir.0.join("innocent.txt")).unwrap();
    let root = dir.0.display().to_string();
    let relay = Relay::start(&["--static", &root, "--fps", "5", "--size", "160x120"]);
    for path in [
        "/.htpasswd",
        "/.git/config",
        "/%2ehtpasswd",
        "/.git/",
        "/innocent.txt",
    ] {
        let (code, _, body) = get(&relay.http, path);
        assert_eq!(code, 404, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{path}");
    }
    for path in ["/", "/status", "/snapshot", "/nope", "/metrics"] {
        let (_, headers, _) = get(&relay.http, path);
        assert_eq!(
            header(&headers, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    let mut s = TcpStream::connect(&relay.http).unwrap();
    send_get(&mut s, "/stream", "curl/8.0");
    let (code, headers, _, _) = read_head(&mut s);
    assert_eq!(code, 200);
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
}

#[test]
fn secrets_in_exec_commands_and_camera_urls_stay_out_of_logs_and_status() {
    let relay = Relay::start(&[
        "--stream",
        "a=exec:echo 'opening rtsp://admin:hunter2@10.0.0.9/live?pwd=hunter3' >&2; exit 3",
        "--stream",
        "b=http://127.0.0.1:9/snap.cgi?user=admin&pwd=hunter4&res=1",
        "--status-details",
    ]);
    assert!(relay.wait_log("cannot get frames from command", Duration::from_secs(5)));
    assert!(relay.wait_log("cannot get frames from http", Duration::from_secs(5)));
    let status = relay.status().to_string();
    let log = relay.log_text();
    for secret in ["hunter2", "hunter3", "hunter4"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(!status.contains(secret), "{secret} in /status: {status}");
    }
    // Redacted, not removed: the operator still sees which camera it is.
    assert!(
        log.contains("rtsp://admin:***@10.0.0.9/live?pwd=***"),
        "{log}"
    );
    assert!(
        status.contains("snap.cgi?user=admin&pwd=***&res=1"),
        "{status}"
    );
}

#[test]
fn a_new_tcp_listen_upstream_is_never_left_marked_lost() {
    // The old upstream's reader set "lost" after releasing the lock that decides which
    // upstream is current: a new upstream connecting in that window stayed "lost" in /status
    // while its frames flowed.
    let relay = Relay::start(&[
        "--source",
        "tcp-listen:127.0.0.1:0",
        "--no-signal-after",
        "0",
    ]);
    let addr = relay.upstream.clone().unwrap();
    let mut old = TcpStream::connect(&addr).unwrap();
    old.write_all(&gst_part(&frame(1, 200))).unwrap();
    for round in 0..40u64 {
        let connections = relay.status()["streams"][0]["source"]["connections"]
            .as_u64()
            .unwrap();
        // The old one closes and the new one connects at the same moment.
        drop(old);
        old = TcpStream::connect(&addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while relay.status()["streams"][0]["source"]["connections"].as_u64() == Some(connections) {
            assert!(Instant::now() < deadline, "round {round}: not accepted");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(30));
        let src = relay.status()["streams"][0]["source"].clone();
        assert_eq!(src["state"], "live", "round {round}: {src}");
    }
    // And its frames flow.
    old.write_all(&gst_part(&frame(99, 200))).unwrap();
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let f = frames_until(&mut viewer, Duration::from_secs(5), |f| {
        seq_of(f) == Some(99)
    })
    .expect("frames from the newest upstream");
    assert!(f.iter().all(|f| is_whole_jpeg(f)));
}
