//! Every source kind against a real upstream (ffmpeg, gstreamer, another relay; the seed's
//! own gstreamer pipeline into `tcp-listen` and `stdin`), several streams in one process, and
//! upstream loss: viewers stay connected, see NO SIGNAL, then the live picture again; a
//! replaced `tcp-listen` upstream, a `unix:` upstream that accepts nothing, an `exec:`
//! grandchild holding stderr. Never skipped: `.ci/run` installs the tools, and a missing one
//! fails.

use mjpeg_relay::nosignal::is_no_signal;
use mjpeg_relay::testjpeg::{is_whole_jpeg, jpeg_with_seq, seq_of};
use mjpeg_testkit::*;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Reads `n` frames that are not NO SIGNAL pictures; every one must be a whole JPEG.
fn live_frames(client: &mut StreamClient, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("only {} of {n} live frames in time", out.len()));
        let f = client
            .next_frame(left)
            .unwrap_or_else(|| panic!("stream ended after {} of {n} live frames", out.len()));
        assert!(is_whole_jpeg(&f), "frame is not a whole JPEG");
        if !is_no_signal(&f) {
            out.push(f);
        }
    }
    out
}

fn gst(pipeline: &str) -> Helper {
    require_tool("gst-launch-1.0");
    Helper::spawn(
        Command::new("gst-launch-1.0")
            .arg("-q")
            .args(pipeline.split_whitespace()),
    )
}

#[test]
fn http_source_pulls_from_ffmpeg_listen_server() {
    require_tool("ffmpeg");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    // ffmpeg's HTTP server: one client, chunked, application/octet-stream.
    let _ffmpeg = Helper::spawn(Command::new("ffmpeg").args([
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x480:rate=30",
        "-c:v",
        "mjpeg",
        "-f",
        "mpjpeg",
        "-listen",
        "1",
        &url,
    ]));
    let relay = Relay::start(&["--source", &url]);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let frames = live_frames(&mut viewer, 20, Duration::from_secs(20));
    // testsrc2 moves: consecutive frames differ.
    assert!(frames.windows(2).all(|w| w[0] != w[1]));
    let status = relay.status();
    let src = &status["streams"][0]["source"];
    assert_eq!(src["state"], "live", "{src}");
    assert!(
        src["format"].as_str().unwrap().contains("multipart"),
        "{src}"
    );
}

/// Pushes frames into a relay's `tcp-listen` port one at a time, when the test says.
struct ManualUpstream(TcpStream);

impl ManualUpstream {
    fn send(&mut self, seq: u64) {
        self.0.write_all(&gst_part(&frame(seq, 3000))).unwrap();
    }
}

/// An HTTP upstream that writes each part only when asked to, and the boundary that opens a
/// part together with that part: never the next boundary early. A parser that found a frame's
/// end by waiting for the next boundary would hold each frame back a whole interval here.
fn paced_http_upstream() -> (String, std::sync::mpsc::Sender<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/video", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = [0u8; 4096];
        let _ = std::io::Read::read(&mut s, &mut head);
        s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=paced\r\n\r\n",
        )
        .unwrap();
        // Ends when the test drops the sender.
        for seq in rx {
            let mut part = b"--paced\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
            part.extend_from_slice(&frame(seq, 3000));
            part.extend_from_slice(b"\r\n");
            if s.write_all(&part).is_err() {
                return;
            }
        }
    });
    (url, tx)
}

#[test]
fn http_source_passes_each_frame_on_before_the_next_part_begins() {
    // No Content-Length and no early boundary: the relay's parser must find each frame's end
    // by itself (the JPEG's end marker) and pass it on at once.
    let (url, parts) = paced_http_upstream();
    let relay = Relay::start(&["--source", &url, "--no-signal-after", "0"]);
    parts.send(1).unwrap();
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    for seq in 2..=5u64 {
        parts.send(seq).unwrap();
        frames_until(&mut viewer, Duration::from_millis(900), |f| {
            seq_of(f) == Some(seq)
        })
        .unwrap_or_else(|| panic!("frame {seq} was held back until the next part"));
        std::thread::sleep(Duration::from_millis(1000));
    }
}

#[test]
fn chained_relays_pass_frames_intact_in_order_and_at_once() {
    let origin = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let up_addr = origin.upstream.clone().unwrap();
    // The edge pulls the origin's advance layout (no Content-Length). Both of the relay's
    // layouts write the next boundary line right after each frame, so this shows the chain
    // adds no frame of delay, not how the parser finds a frame's end: that is
    // http_source_passes_each_frame_on_before_the_next_part_begins, whose upstream holds the
    // next boundary back.
    let url = format!("http://{}/stream?advance_headers=1", origin.http);
    let edge = Relay::start(&["--source", &url, "--no-signal-after", "0"]);
    let mut up = ManualUpstream(TcpStream::connect(&up_addr).unwrap());
    up.send(1);
    let mut viewer = StreamClient::open(&edge.http, "/stream", "curl/8.0", None);
    // Frame by frame, a second apart: each must reach the edge's viewer before the next one
    // exists anywhere (the one-second repeat of a still picture is allowed in between).
    let mut last = 0;
    for seq in 2..=6u64 {
        up.send(seq);
        let got = frames_until(&mut viewer, Duration::from_millis(900), |f| {
            seq_of(f) == Some(seq)
        })
        .unwrap_or_else(|| panic!("frame {seq} did not pass the chain before the next one"));
        for f in &got {
            let s = seq_of(f).unwrap();
            assert!(s >= last, "out of order: {s} after {last}");
            assert!(*f == frame(s, 3000), "frame {s} changed on the way");
            last = s;
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    // And at full rate: intact and in order.
    drop(up);
    let pusher = Upstream::start_from(&up_addr, 30.0, 100, 90, 20_000);
    let mut seen = Vec::new();
    while let Some(f) = viewer.next_frame(Duration::from_secs(5)) {
        let s = seq_of(&f).unwrap();
        let base = if s < 100 { 3000 } else { 20_000 };
        assert!(f == frame(s, base), "frame {s} changed on the way");
        if s >= 100 {
            seen.push(s);
        }
        if s == 189 {
            break;
        }
    }
    pusher.finish();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "order: {seen:?}");
    assert!(
        seen.len() >= 60,
        "too few frames through the chain: {}",
        seen.len()
    );
}

#[test]
fn http_source_recovers_from_failed_connections_and_bad_statuses() {
    // Nothing listens yet: the edge retries with backoff; a viewer connected meanwhile sees
    // NO SIGNAL and then the live picture, on the same connection.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/stream");
    let edge = Relay::start(&["--source", &url, "--no-signal-after", "0.5"]);
    assert!(edge.wait_log("cannot get frames from", Duration::from_secs(5)));
    let mut early = StreamClient::open(&edge.http, "/stream", "curl/8.0", None);
    let first = early.next_frame(Duration::from_secs(5)).expect("a frame");
    assert!(is_no_signal(&first), "expected the NO SIGNAL picture first");
    let origin = Relay::start(&["--http", &format!("127.0.0.1:{port}"), "--fps", "20"]);
    let live = live_frames(&mut early, 5, Duration::from_secs(20));
    assert_eq!(live.len(), 5);
    // A later viewer is served too (the trap: proxies that hang everyone after one failure).
    let mut late = StreamClient::open(&edge.http, "/stream", "curl/8.0", None);
    live_frames(&mut late, 3, Duration::from_secs(5));
    drop(origin);

    // A 404 is a clear error naming the status, retried, and logged once.
    let bad = format!("http://127.0.0.1:{port}/nope");
    let _origin = Relay::start(&["--http", &format!("127.0.0.1:{port}")]);
    let edge = Relay::start(&["--source", &bad]);
    assert!(
        edge.wait_log("HTTP 404", Duration::from_secs(5)),
        "{}",
        edge.log_text()
    );
    std::thread::sleep(Duration::from_secs(2)); // several retries
    let lines = edge.log_text().matches("HTTP 404").count();
    assert_eq!(
        lines,
        1,
        "the same failure is logged once: {}",
        edge.log_text()
    );
}

#[test]
fn tcp_source_reads_gstreamer_tcpserversink() {
    let port = free_port();
    let _gst = gst(&format!(
        "videotestsrc is-live=true ! video/x-raw,framerate=15/1,width=320,height=240 ! jpegenc \
         ! multipartmux boundary=spionisto ! tcpserversink host=127.0.0.1 port={port}"
    ));
    let relay = Relay::start(&["--source", &format!("tcp:127.0.0.1:{port}")]);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let frames = live_frames(&mut viewer, 15, Duration::from_secs(20));
    assert!(frames.windows(2).all(|w| w[0] != w[1]));
}

#[test]
fn exec_source_runs_gstreamer_and_ffmpeg() {
    require_tool("gst-launch-1.0");
    require_tool("ffmpeg");
    for cmd in [
        "exec:gst-launch-1.0 -q videotestsrc is-live=true ! video/x-raw,framerate=15/1,width=320,height=240 ! jpegenc ! multipartmux ! fdsink fd=1",
        "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=15 -c:v mjpeg -f mjpeg -",
    ] {
        let relay = Relay::start(&["--source", cmd]);
        let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
        let frames = live_frames(&mut viewer, 10, Duration::from_secs(20));
        assert!(frames.windows(2).all(|w| w[0] != w[1]), "{cmd}");
    }
}

#[test]
fn exec_child_is_restarted_and_its_process_group_stopped_with_the_relay() {
    require_tool("gst-launch-1.0");
    let marker = format!("relaytest{}", std::process::id());
    // A background helper in the same process group, to prove the whole group goes.
    let cmd = format!(
        "exec:sleep 300 >/dev/null & gst-launch-1.0 -q videotestsrc name={marker} is-live=true \
         ! video/x-raw,framerate=15/1,width=160,height=120 ! jpegenc ! multipartmux ! fdsink fd=1"
    );
    let mut relay = Relay::start(&["--source", &cmd, "--no-signal-after", "0"]);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    live_frames(&mut viewer, 5, Duration::from_secs(20));
    let group = |relay: &Relay| -> i32 {
        let st = relay.status();
        let addr = st["streams"][0]["source"]["address"]
            .as_str()
            .unwrap_or("")
            .to_string();
        addr.strip_prefix("pid ").unwrap().parse().unwrap()
    };
    let first = group(&relay);
    let gst_pid = live_processes(&marker, None)
        .into_iter()
        .find(|(_, c)| c.starts_with("gst-launch"))
        .expect("gst-launch running")
        .0;
    // Kill the camera command: it is restarted, and the same viewer gets frames again.
    unsafe { libc::kill(gst_pid, libc::SIGKILL) };
    assert!(
        relay.wait_log("back after", Duration::from_secs(10)),
        "{}",
        relay.log_text()
    );
    live_frames(&mut viewer, 5, Duration::from_secs(20));
    let second = group(&relay);
    assert_ne!(first, second);
    assert!(
        live_processes("\u{1}", Some(first)).is_empty(),
        "old group left behind"
    );
    // Stop the relay: nothing of the command is left.
    relay.signal(libc::SIGTERM);
    assert_eq!(relay.wait_exit(Duration::from_secs(10)).0.code(), Some(0));
    let left = live_processes(&marker, Some(second));
    assert!(
        left.is_empty(),
        "processes left after the relay stopped: {left:?}"
    );
}

#[test]
fn file_source_replays_a_recording_and_a_directory_in_order() {
    let dir = TempDir::new("file-source");
    let rec = dir.0.join("rec.mjpeg");
    let mut bytes = Vec::new();
    for seq in 1..=5 {
        bytes.extend_from_slice(&gst_part(&frame(seq, 500)));
    }
    std::fs::write(&rec, bytes).unwrap();
    let jpgs = dir.0.join("jpgs");
    std::fs::create_dir(&jpgs).unwrap();
    for seq in 11..=14u64 {
        std::fs::write(jpgs.join(format!("{seq:03}.jpg")), frame(seq, 200)).unwrap();
    }
    std::fs::write(jpgs.join("000.jpg"), b"not a jpeg").unwrap();
    std::fs::write(jpgs.join("notes.txt"), b"ignored").unwrap();
    for (path, cycle) in [(&rec, vec![1, 2, 3, 4, 5]), (&jpgs, vec![11, 12, 13, 14])] {
        let spec = format!("file:{}", path.display());
        let relay = Relay::start(&["--source", &spec, "--fps", "20"]);
        let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
        let seqs: Vec<u64> = live_frames(&mut viewer, 3 * cycle.len(), Duration::from_secs(10))
            .iter()
            .map(|f| seq_of(f).unwrap())
            .collect();
        // Looping, in order: each frame is followed by the next of the cycle.
        for w in seqs.windows(2) {
            let i = cycle.iter().position(|s| *s == w[0]).unwrap();
            assert_eq!(w[1], cycle[(i + 1) % cycle.len()], "{seqs:?}");
        }
    }
}

#[test]
fn upstream_loss_keeps_viewers_and_shows_no_signal_until_the_upstream_returns() {
    // tcp: the relay dials out to a server we stop and restart on the same port.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serve = |listener: TcpListener, first: u64| {
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            for seq in first..first + 30 {
                if s.write_all(&gst_part(&frame(seq, 2000))).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Dropping the socket and the listener: the upstream is gone.
        })
    };
    let server = serve(listener, 1);
    let relay = Relay::start(&[
        "--source",
        &format!("tcp:{addr}"),
        "--no-signal-after",
        "0.5",
    ]);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    live_frames(&mut viewer, 5, Duration::from_secs(10));
    server.join().unwrap();
    // The same connection gets the NO SIGNAL picture...
    let got = frames_until(&mut viewer, Duration::from_secs(5), is_no_signal)
        .expect("NO SIGNAL picture after the upstream went away");
    assert!(got.iter().all(|f| is_whole_jpeg(f)));
    assert_eq!(relay.status()["streams"][0]["source"]["state"], "lost");
    // ...then, once the upstream is back, live frames again, still on the same connection.
    let listener = TcpListener::bind(&addr).unwrap();
    let restarted = Instant::now();
    let server = serve(listener, 1000);
    let got = frames_until(&mut viewer, Duration::from_secs(15), |f| {
        seq_of(f).is_some_and(|s| s >= 1000)
    })
    .expect("live frames after the upstream came back");
    eprintln!(
        "upstream restart to first live frame at the viewer: {:.0} ms",
        restarted.elapsed().as_secs_f64() * 1000.0
    );
    assert!(got.iter().all(|f| is_whole_jpeg(f)));
    let st = relay.status();
    let src = &st["streams"][0]["source"];
    assert_eq!(src["state"], "live", "{src}");
    assert_eq!(src["reconnects"], 1, "{src}");
    assert!(relay.wait_log("back after", Duration::from_secs(2)));
    server.join().unwrap();
}

#[test]
fn two_named_streams_each_viewer_gets_only_its_own() {
    let dir = TempDir::new("two-streams");
    for (name, base) in [("a", 100u64), ("b", 200)] {
        let d = dir.0.join(name);
        std::fs::create_dir(&d).unwrap();
        for k in 0..3 {
            std::fs::write(d.join(format!("{k}.jpg")), frame(base + k, 100)).unwrap();
        }
    }
    let a = format!("cam-a=file:{}", dir.0.join("a").display());
    let b = format!("cam_b=file:{}", dir.0.join("b").display());
    let relay = Relay::start(&["--stream", &a, "--stream", &b, "--fps", "20"]);
    for (path, range) in [("/cam-a/stream", 100..103), ("/cam_b/stream", 200..203)] {
        let mut viewer = StreamClient::open(&relay.http, path, "curl/8.0", None);
        for f in live_frames(&mut viewer, 10, Duration::from_secs(10)) {
            let s = seq_of(&f).unwrap();
            assert!(range.contains(&s), "{path} got frame {s}");
        }
    }
    let st = relay.status();
    let names: Vec<_> = st["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["cam-a", "cam_b"]);
    assert_eq!(st["streams"][1]["path"], "/cam_b/stream");
    let (code, _, body) = get(&relay.http, "/");
    let page = String::from_utf8_lossy(&body);
    assert_eq!(code, 200);
    assert!(
        page.contains("/mux")
            && page.contains("href=\"/cam-a/\"")
            && page.contains("href=\"/cam_b/\""),
        "{page}"
    );
    let (code, _, body) = get(&relay.http, "/cam_b/snapshot");
    assert_eq!(code, 200);
    assert!((200..203).contains(&seq_of(&body).unwrap()));
    let (code, _, body) = get(&relay.http, "/cam_b/status");
    assert_eq!(code, 200);
    let one: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(one["streams"].as_array().unwrap().len(), 1);
    // URLs without a stream name (ours and the compatibility ones) mean the first stream.
    let mut first = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    for f in live_frames(&mut first, 3, Duration::from_secs(10)) {
        assert!((100..103).contains(&seq_of(&f).unwrap()));
    }
    assert_eq!(get(&relay.http, "/nope/stream").0, 404);
    assert_eq!(get(&relay.http, "/cam-a").0, 301);
}

#[test]
fn bad_stream_flags_are_refused_with_exit_code_2() {
    for (args, want) in [
        (&["--stream", "bad name=testsrc"][..], "only letters"),
        (&["--stream", "a=tcp:nowhere"][..], "--stream a="),
        (&["--stream", "a=file:/no/such/dir"][..], "does not exist"),
        (&["--source", "https://cam/x"][..], "TLS"),
    ] {
        assert_bad_command_line(args, want);
    }
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

/// Item 9: connecting to a `unix:` upstream whose listener accepts nothing (backlog full)
/// times out and says so, instead of hanging the source thread for good.
#[test]
fn a_unix_upstream_that_accepts_nothing_times_out() {
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("unix-full");
    let path = dir.0.join("cam.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // SAFETY: listen(2) on our own listening socket: backlog 0.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    // Fill the backlog: connect without accepting until a connect would block.
    let mut fillers = Vec::new();
    for _ in 0..64 {
        // SAFETY: a plain non-blocking socket, owned by `fillers` through UnixStream.
        let s = unsafe {
            use std::os::fd::FromRawFd;
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            std::os::unix::net::UnixStream::from_raw_fd(fd)
        };
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, b) in addr.sun_path.iter_mut().zip(path.to_str().unwrap().bytes()) {
            *d = b as libc::c_char;
        }
        // SAFETY: connect with a valid sockaddr_un.
        let rc = unsafe {
            libc::connect(
                s.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            break;
        }
        fillers.push(s);
    }
    assert!(
        !fillers.is_empty() && fillers.len() < 64,
        "{} fillers",
        fillers.len()
    );
    let relay = Relay::start(&["--source", &format!("unix:{}", path.display())]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = relay.status();
        let err = st["streams"][0]["source"]["last_error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if err.contains("timed out") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connect timeout reported: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(relay);
    drop(fillers);
    // The control: the same source on a listener that accepts gets its frames.
    let path = dir.0.join("cam2.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        for seq in 1..=200u64 {
            if s.write_all(&gst_part(&jpeg_with_seq(seq, 200))).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let relay = Relay::start(&["--source", &format!("unix:{}", path.display())]);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let f = viewer
        .next_frame(Duration::from_secs(10))
        .expect("a frame over unix:");
    assert!(seq_of(&f).is_some());
    drop(viewer);
    drop(relay);
    let _ = server.join();
}

/// Threads of `relay` whose name starts with `prefix` (names are cut at 15 bytes).
fn threads_named(relay: &Relay, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", relay.pid()))
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .count()
}

/// Item 9: a grandchild that leaves the command's process group and keeps its stderr open
/// does not keep a stderr thread of the relay alive for every run of the command.
#[test]
fn an_exec_stderr_thread_ends_with_its_run() {
    let marker = "19.25";
    let relay = Relay::start(&[
        "--source",
        &format!("exec:setsid sleep {marker} >/dev/null & echo started >&2; exit 0"),
    ]);
    // Runs at 0, 0.5, 1.5, 3.5 s (backoff): four grandchildren holding four stderr pipes.
    std::thread::sleep(Duration::from_millis(5500));
    let runs = relay.status()["streams"][0]["source"]["connections"]
        .as_u64()
        .unwrap();
    let threads = threads_named(&relay, "src-default-std");
    let _ = Command::new("pkill")
        .args(["-f", &format!("sleep {marker}")])
        .status();
    // The control: the command really ran several times, each leaving a grandchild.
    assert!(runs >= 4, "{runs} runs");
    assert!(threads <= 2, "{threads} stderr threads after {runs} runs");
}

fn pipeline_head() -> Vec<String> {
    "videotestsrc is-live=true num-buffers=150 ! video/x-raw,framerate=30/1,width=320,height=240 \
     ! jpegenc ! multipartmux boundary=spionisto"
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn read_frames(relay: &Relay, want: usize) -> Vec<Vec<u8>> {
    let mut client = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let mut frames = Vec::new();
    while frames.len() < want {
        match client.next_frame(Duration::from_secs(10)) {
            Some(f) => frames.push(f),
            None => break,
        }
    }
    frames
}

#[test]
fn gst_tcpclientsink_into_tcp_listen() {
    require_tool("gst-launch-1.0");
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let up = relay.upstream.clone().unwrap();
    let (host, port) = up.rsplit_once(':').unwrap();
    let mut args = pipeline_head();
    args.extend(["!", "tcpclientsink"].map(String::from));
    args.push(format!("host={host}"));
    args.push(format!("port={port}"));
    let mut gst = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gst-launch-1.0");
    let frames = read_frames(&relay, 30);
    let status = relay.status();
    let _ = gst.kill();
    let _ = gst.wait();
    assert!(
        frames.len() >= 30,
        "got {} frames from gstreamer",
        frames.len()
    );
    assert!(frames.iter().all(|f| is_whole_jpeg(f)));
    // Distinct pictures, not one frame repeated.
    assert!(frames.windows(2).filter(|w| w[0] != w[1]).count() >= 20);
    assert_eq!(
        status["streams"][0]["source"]["format"],
        "multipart boundary=spionisto"
    );
    assert_eq!(status["streams"][0]["source"]["dropped"]["not_jpeg"], 0);
}

#[test]
fn gst_fdsink_piped_into_stdin() {
    require_tool("gst-launch-1.0");
    let mut args = pipeline_head();
    args.extend(["!", "fdsink", "fd=1"].map(String::from));
    let mut gst = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run gst-launch-1.0");
    let pipe = gst.stdout.take().unwrap();
    let relay = Relay::start_with_stdin(&["--source", "stdin"], pipe);
    let frames = read_frames(&relay, 30);
    let _ = gst.kill();
    let _ = gst.wait();
    assert!(
        frames.len() >= 30,
        "got {} frames through the pipe",
        frames.len()
    );
    assert!(frames.iter().all(|f| is_whole_jpeg(f)));
    // When the pipeline ends, the stream has ended, and every place says so (the full check,
    // with the SOURCE ENDED picture, is in tests/operator.rs).
    assert!(relay.wait_log("stdin reached end of input", Duration::from_secs(15)));
    assert_eq!(relay.status()["streams"][0]["source"]["state"], "ended");
    let (code, _, body) = get(&relay.http, "/snapshot");
    assert_eq!(code, 503);
    assert!(String::from_utf8_lossy(&body).contains("The source ended"));
}
