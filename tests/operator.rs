//! What an operator sees when a source misbehaves: one log line per outage (not one per
//! retry), the reason in `/status` and in `/snapshot`'s answer, a clean stop that is not
//! logged as a loss, a snapshot URL that is polled instead of refused, an ended stream that
//! says it ended, and a `file:` with nothing to play refused at start. Needs only `sh`.

use mjpeg_relay::nosignal::is_no_signal;
use mjpeg_relay::testjpeg::{is_whole_jpeg, jpeg_with_seq, seq_of};
use mjpeg_testkit::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn lines_with(relay: &Relay, needle: &str) -> usize {
    relay
        .log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn a_broken_exec_command_is_logged_once_and_status_says_why() {
    let relay = Relay::start(&["--source", "exec:no-such-camera-cmd-4711"]);
    // Attempts at 0, 0.5, 1.5, 3.5 and 7.5 s: four or five in 8 s.
    std::thread::sleep(Duration::from_secs(8));
    let st = relay.status();
    let src = &st["streams"][0]["source"];
    // The control: the command really was retried, so one line is a real bound, not luck.
    assert!(src["connections"].as_u64().unwrap() >= 4, "{src}");
    let log = relay.log_text();
    assert_eq!(lines_with(&relay, "cannot get frames from"), 1, "{log}");
    assert_eq!(lines_with(&relay, "command says:"), 1, "{log}");
    assert_eq!(lines_with(&relay, "WARN"), 1, "{log}");
    assert_eq!(lines_with(&relay, "back after"), 0, "{log}");
    let err = src["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("exited with status 127"), "{src}");
    // The command's own words are the operator's (issue 32): the log has them, /status
    // without a login says where to find them.
    assert!(!err.contains("not found"), "{src}");
    assert!(err.contains("shown with --status-details"), "{src}");
    assert!(log.contains("no-such-camera-cmd-4711: not found"), "{log}");
    assert!(src["last_error_age_s"].as_f64().is_some(), "{src}");
    // Issue 32: never delivered since it started, so not "lost" (nothing was): "failing".
    assert_eq!(src["state"], "failing", "{src}");
    let (code, _, body) = get(&relay.http, "/snapshot");
    assert_eq!(code, 503);
    assert!(
        String::from_utf8_lossy(&body).contains("exited with status 127"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

/// A recording of raw JPEGs with rising sequence numbers, and a command that plays it in a
/// loop, like a camera command would.
fn looping_command(dir: &TempDir) -> String {
    let rec = dir.0.join("rec.mjpeg");
    let mut bytes = Vec::new();
    for seq in 1..=10 {
        bytes.extend(jpeg_with_seq(seq, 2000));
    }
    std::fs::write(&rec, bytes).unwrap();
    format!("exec:while :; do cat {}; sleep 0.2; done", rec.display())
}

/// Issue 32: an `exec:` command's last stderr line (ffmpeg's own words, with an RTSP URL whose
/// password is in its path, where no redaction can see it) reached `/status`, the viewer page
/// and `/snapshot`'s 503 without a login. They follow the command's rule now: shown with
/// `--status-details` (the control, which also proves the words were there to leak) or a
/// login, kept in the log.
#[test]
fn a_commands_words_stay_out_of_status_and_snapshot_without_a_login() {
    const SECRET: &str = "hunter2secret";
    let cmd = format!(
        "exec:echo 'rtsp://10.0.0.20:554/user=admin_password={SECRET}/stream: Connection refused' >&2; exit 1"
    );
    let shows = |details: bool| {
        let mut args = vec!["--source", cmd.as_str()];
        if details {
            args.push("--status-details");
        }
        let relay = Relay::start(&args);
        assert!(relay.wait_log("exited with status 1", Duration::from_secs(5)));
        let (_, _, status) = get(&relay.http, "/status?format=json");
        let (code, _, snapshot) = get(&relay.http, "/snapshot");
        assert_eq!(code, 503);
        assert!(relay.log_text().contains(SECRET), "the log keeps the words");
        let status = String::from_utf8_lossy(&status).to_string();
        let snapshot = String::from_utf8_lossy(&snapshot).to_string();
        assert!(status.contains("exited with status 1"), "{status}");
        assert!(snapshot.contains("exited with status 1"), "{snapshot}");
        (status.contains(SECRET), snapshot.contains(SECRET))
    };
    assert_eq!(shows(false), (false, false), "without a login");
    assert_eq!(shows(true), (true, true), "with --status-details");
}

/// Issue 32: `/status` named the `sh -c` wrapper's pid for an `exec:` source; killing it left
/// the camera command running and the stream live. One simple command now replaces the shell,
/// so the pid is the command's own; a pipeline keeps its shell (the control: there the pid is
/// `sh`'s, the leader of the process group `kill -- -PID` stops).
#[test]
fn status_names_the_commands_own_pid() {
    let dir = TempDir::new("exec-pid");
    let file = dir.0.join("one.jpg");
    std::fs::write(&file, jpeg_with_seq(1, 100)).unwrap();
    // The program running as the pid /status names, once a frame arrived (by then `sh` has
    // long replaced itself where it does).
    // Stopped with SIGTERM, as a service is, so the relay stops the command's whole process
    // group: a `tail -f` that never writes would not notice a SIGKILLed relay (no EPIPE).
    let program_of = |cmd: &str| {
        let mut relay =
            Relay::start(&["--source", &format!("exec:{cmd}"), "--source-timeout", "30"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let comm = loop {
            let st = relay.status();
            let src = &st["streams"][0]["source"];
            let addr = src["address"].as_str().unwrap_or("").to_string();
            let framed = src["frames_in"].as_u64().unwrap_or(0) > 0;
            if let (Some(pid), true) = (addr.strip_prefix("pid "), framed) {
                std::thread::sleep(Duration::from_millis(300));
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
                break comm.trim().to_string();
            }
            assert!(Instant::now() < deadline, "no pid and frame in {st}");
            std::thread::sleep(Duration::from_millis(50));
        };
        relay.signal(libc::SIGTERM);
        relay.wait_exit(Duration::from_secs(5));
        comm
    };
    let f = file.display();
    assert_eq!(program_of(&format!("tail -c +1 -f {f}")), "tail");
    assert_eq!(program_of(&format!("tail -c +1 -f {f} | cat")), "sh");
}

/// Issue 32: `/snapshot`'s 503 for a `tcp-listen:` stream said the relay "keeps
/// reconnecting" while it waits for its sender to connect. Now it says what it waits for,
/// before the first sender and after one left; the control, a `tcp:` source that dials,
/// still says it keeps reconnecting.
#[test]
fn a_push_sources_503_says_the_relay_waits_for_the_sender() {
    let dialing = std::thread::spawn(|| {
        let relay = Relay::start(&["--source", &format!("tcp:127.0.0.1:{}", free_port())]);
        // Once it has failed to connect (before that it is "connecting"; a loaded machine
        // once asked first).
        let deadline = Instant::now() + Duration::from_secs(10);
        while relay.status()["streams"][0]["source"]["last_error"].is_null()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (code, _, body) = get(&relay.http, "/snapshot");
        (code, String::from_utf8_lossy(&body).to_string())
    });
    let relay = Relay::start(&[
        "--source",
        "tcp-listen:127.0.0.1:0",
        "--no-signal-after",
        "0.5",
    ]);
    let (code, _, body) = get(&relay.http, "/snapshot");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("waiting for the sender to connect"), "{body}");
    let mut up = std::net::TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    up.write_all(&gst_part(&frame(1, 500))).unwrap();
    assert!(until_frames(&relay, 1), "{}", relay.log_text());
    drop(up);
    assert!(relay.wait_log("waiting for it to reconnect", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(1000)); // the NO SIGNAL picture is up
    let (code, _, body) = get(&relay.http, "/snapshot");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("waits for the sender to connect again"),
        "{body}"
    );
    assert!(!body.contains("reconnecting"), "{body}");
    let (code, body) = dialing.join().unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("keeps reconnecting"), "{body}");
}

fn until_frames(relay: &Relay, n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if relay.status()["streams"][0]["source"]["frames_in"].as_u64() >= Some(n) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn stopping_the_relay_is_not_logged_as_a_lost_command() {
    let dir = TempDir::new("exec-stop");
    let cmd = looping_command(&dir);
    let mut relay = Relay::start(&["--source", &cmd]);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    assert!(viewer.next_frame(Duration::from_secs(10)).is_some());

    // The control: the command dying while we run is a loss, and the log says so.
    let pid: i32 = relay.status()["streams"][0]["source"]["address"]
        .as_str()
        .and_then(|a| a.strip_prefix("pid "))
        .and_then(|p| p.parse().ok())
        .expect("exec address is 'pid N'");
    // SAFETY: kill(2) on the process group the relay made for its command.
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    assert!(
        relay.wait_log("lost command", Duration::from_secs(5)),
        "{}",
        relay.log_text()
    );
    assert!(relay.wait_log("back after", Duration::from_secs(10)));

    let before = relay.log_text().lines().count();
    relay.signal(libc::SIGTERM);
    let (status, _) = relay.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    let after: Vec<String> = relay.log.lock().unwrap()[before..].to_vec();
    assert!(
        !after
            .iter()
            .any(|l| l.contains("WARN") || l.contains("lost") || l.contains("killed by signal")),
        "stopping logged a loss: {after:#?}"
    );
    assert!(after.iter().any(|l| l.contains("stopped")), "{after:#?}");
}

/// A camera's snapshot URL: one JPEG per request, then close. Counts requests.
fn snapshot_server(stop: Arc<AtomicBool>) -> (String, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop.load(SeqCst) && Instant::now() < deadline {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let n = count.fetch_add(1, SeqCst) + 1;
            let jpeg = jpeg_with_seq(n, 1000);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                jpeg.len()
            );
            let _ = s.write_all(&jpeg);
        }
    });
    (addr, served, handle)
}

#[test]
fn an_http_snapshot_url_is_polled_at_the_frame_rate() {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, served, server) = snapshot_server(stop.clone());
    let relay = Relay::start(&[
        "--source",
        &format!("http://user:pw@{addr}/snapshot.jpg"),
        "--fps",
        "10",
    ]);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let t0 = Instant::now();
    let mut seqs = Vec::new();
    while seqs.len() < 15 && t0.elapsed() < Duration::from_secs(10) {
        if let Some(f) = viewer.next_frame(Duration::from_secs(2)) {
            assert!(is_whole_jpeg(&f));
            if !is_no_signal(&f) {
                seqs.push(seq_of(&f).unwrap());
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let requests = served.load(SeqCst);
    stop.store(true, SeqCst);
    assert!(seqs.len() >= 15, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Polled at --fps (10/s), not flat out: a loop without the pause would make hundreds.
    let rate = requests as f64 / secs;
    assert!(
        (5.0..=16.0).contains(&rate),
        "{requests} requests in {secs:.1} s"
    );
    let log = relay.log_text();
    assert_eq!(lines_with(&relay, "serves single pictures"), 1, "{log}");
    assert!(log.contains("polling it every 100 ms"), "{log}");
    assert!(!log.contains("pw@"), "password in the log: {log}");
    let src = relay.status()["streams"][0]["source"].clone();
    assert_eq!(src["state"], "live", "{src}");
    // The address is where the upstream is, not its content type.
    assert_eq!(src["address"], addr.as_str(), "{src}");
    assert_eq!(src["format"], "raw JPEG", "{src}");
    drop(relay);
    server.join().unwrap();
}

#[test]
fn an_ended_stdin_stream_says_it_ended_everywhere() {
    let dir = TempDir::new("ended");
    let rec = dir.0.join("rec.mjpeg");
    let mut bytes = Vec::new();
    for seq in 1..=20 {
        bytes.extend(jpeg_with_seq(seq, 1000));
    }
    std::fs::write(&rec, bytes).unwrap();
    // Twenty frames over two seconds, then the pipe closes.
    let mut feeder = Command::new("sh")
        .args(["-c", &format!("sleep 1; cat {}; sleep 1", rec.display())])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = feeder.stdout.take().unwrap();
    let relay = Relay::start_with_stdin(&["--source", "stdin", "--no-signal-after", "0.5"], pipe);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let mut last_real = 0;
    let ended_picture = loop {
        let f = viewer
            .next_frame(Duration::from_secs(10))
            .expect("frames until the SOURCE ENDED picture");
        if is_no_signal(&f) && last_real > 0 {
            break f;
        }
        if let Some(s) = seq_of(&f) {
            last_real = s;
        }
    };
    assert!(is_whole_jpeg(&ended_picture));
    assert_eq!(last_real, 20);
    feeder.wait().unwrap();
    assert!(relay.wait_log("the stream has ended", Duration::from_secs(5)));
    let src = relay.status()["streams"][0]["source"].clone();
    assert_eq!(src["state"], "ended", "{src}");
    assert_eq!(
        src["format"], "raw JPEG",
        "format kept after the end: {src}"
    );
    assert!(
        src["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("end of input")),
        "{src}"
    );
    let (code, headers, body) = get(&relay.http, "/snapshot");
    let text = String::from_utf8_lossy(&body).to_lowercase();
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("ended"), "{text}");
    assert!(
        !text.contains("yet") && !text.contains("try again"),
        "{text}"
    );
    assert!(header(&headers, "retry-after").is_none());
}

#[test]
fn a_file_source_without_a_jpeg_is_refused_at_start() {
    let dir = TempDir::new("nojpeg");
    let file = dir.0.join("notes.txt");
    std::fs::write(&file, b"no pictures in here\n".repeat(100)).unwrap();
    let empty = dir.0.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("broken.jpg"), b"\xff\xd8 truncated").unwrap();
    for (path, want) in [
        (&file, "holds no whole JPEG frame"),
        (&empty, "holds no .jpg/.jpeg file with a whole JPEG"),
    ] {
        let spec = format!("file:{}", path.display());
        let out = run_with_timeout(
            Command::new(relay_bin()).args(["--http", "127.0.0.1:0", "--source", &spec]),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{err}");
    }
    // The control: the same directory with one good picture starts and serves it.
    std::fs::write(empty.join("good.jpg"), jpeg_with_seq(7, 100)).unwrap();
    let spec = format!("file:{}", empty.display());
    let relay = Relay::start(&["--source", &spec]);
    let mut viewer = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let f = viewer.next_frame(Duration::from_secs(5)).unwrap();
    assert_eq!(seq_of(&f), Some(7));
}

/// Runs the relay with `args` and no `--http` of the test's: its exit code and stderr.
fn run_relay(args: &[&str]) -> (Option<i32>, String) {
    let out = run_with_timeout(
        Command::new(relay_bin()).args(args).stdin(Stdio::null()),
        Duration::from_secs(10),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 31: a 32-bit build (Raspberry Pi OS 32-bit; here the i686 build, see
/// docs/testing.md) took `--max-clients 100000` and then failed thread by thread, since 100,000
/// stacks of 128 KiB do not fit 3 to 4 GB of address space. It refuses past 8,192 at start,
/// saying why; a 64-bit build takes 100,000. Which one this run tests is read from the
/// binary's ELF header, so the same test holds both builds to their own limit.
#[test]
fn max_clients_fits_the_address_space() {
    let elf = std::fs::read(relay_bin()).unwrap();
    let bits = match elf.get(4) {
        Some(1) => 32,
        Some(2) => 64,
        other => panic!("not an ELF class: {other:?}"),
    };
    let (code, err) = run_relay(&["--max-clients", "8192", "--version"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run_relay(&["--max-clients", "20000", "--version"]);
    if bits == 32 {
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("from 1 to 8192") && err.contains("32-bit"),
            "{err}"
        );
    } else {
        assert_eq!(code, Some(0), "{err}");
    }
}

/// Issue 22: errors that say what to do next. Each message as a user sees it.
#[test]
fn errors_say_what_to_do_next() {
    // A port in use names the flag and what to do; a bare port is loopback.
    let first = Relay::start(&[]);
    let port = first.http.rsplit(':').next().unwrap().to_string();
    let (code, err) = run_relay(&["--http", &port]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen for HTTP on 127.0.0.1:{port} (--http)"
        )) && err.contains("Choose another with --http HOST:PORT"),
        "{err}"
    );
    let free = free_port().to_string();
    let bare = Relay::start(&["--http", &free]);
    assert_eq!(bare.http, format!("127.0.0.1:{free}"));

    // The cameras people have, named as they name them: the recipe that works.
    let (code, err) = run_relay(&["--source", "/dev/video0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("exec:ffmpeg -loglevel error -f v4l2"), "{err}");
    let (code, err) = run_relay(&["--source", "rtsp://admin:hunter2@10.0.0.9/live"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("-rtsp_transport tcp -i rtsp://admin:***@10.0.0.9/live"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    // Issue 32: an exec: command the shell split into words (not quoted) said only
    // "invalid option '-f'"; now it says to quote it, after --source and --stream alike. The
    // control: the same stray option without an exec: source gets no such hint.
    for args in [
        &[
            "--source",
            "exec:ffmpeg",
            "-f",
            "lavfi",
            "-i",
            "testsrc",
            "-f",
            "mjpeg",
            "-",
        ][..],
        &["--stream", "cam=exec:cat", "/tmp/x.mjpeg"][..],
        &[
            "--source",
            "testsrc",
            "--fallback",
            "exec:ffmpeg",
            "-f",
            "lavfi",
        ][..],
    ] {
        let (code, err) = run_relay(args);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("must be one quoted argument"),
            "{args:?}: {err}"
        );
    }
    let (_, err) = run_relay(&["--source", "testsrc", "-f", "lavfi"]);
    assert!(err.contains("invalid option '-f'"), "{err}");
    assert!(!err.contains("quoted"), "{err}");

    // Mistyped flags.
    for (typed, want) in [("--port", "--http"), ("--sourc", "--source")] {
        let (code, err) = run_relay(&[typed, "8080"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(&format!("did you mean {want}?")), "{err}");
    }

    // The viewer page's URL given as a source: it is a web page; the stream is at /stream.
    let relay = Relay::start(&["--source", &format!("http://{}/", first.http)]);
    assert!(
        relay.wait_log("is a web page", Duration::from_secs(5)),
        "{}",
        relay.log_text()
    );
    let err = relay.status()["streams"][0]["source"]["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        err.contains(&format!("http://{}/stream", first.http)),
        "{err}"
    );

    // A refused connection in words, the address once.
    let closed = free_port();
    let relay = Relay::start(&["--source", &format!("tcp:127.0.0.1:{closed}")]);
    assert!(relay.wait_log("cannot get frames from", Duration::from_secs(5)));
    let log = relay.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("cannot get frames from"))
        .unwrap();
    assert!(
        line.contains("connection refused (nothing listens there)"),
        "{line}"
    );
    assert!(!line.contains("os error"), "{line}");
    assert_eq!(
        line.matches(&format!("127.0.0.1:{closed}")).count(),
        1,
        "{line}"
    );

    // A command is started and restarted, not connected to.
    let relay = Relay::start(&["--source", "exec:exit 3"]);
    assert!(relay.wait_log("retrying in", Duration::from_secs(5)));
    let log = relay.log_text();
    assert!(log.contains("starting command 'exit 3'"), "{log}");
    assert!(!log.contains("connecting to command"), "{log}");
}

/// Issue 22: the flags of `--help`, the README's flag table and the flags the parser takes
/// stay the same set.
#[test]
fn help_readme_and_parser_name_the_same_flags() {
    let help = run_with_timeout(
        Command::new(relay_bin()).arg("--help"),
        Duration::from_secs(10),
    );
    let help = String::from_utf8(help.stdout).unwrap();
    let flag_of = |s: &str| -> Option<String> {
        let s = s.trim_start();
        let s = s.split(", ").last()?;
        let name = s.strip_prefix("--")?;
        let end = name
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(name.len());
        (end > 0).then(|| name[..end].to_string())
    };
    let in_help: std::collections::BTreeSet<String> = help
        .lines()
        .filter(|l| l.starts_with("    -"))
        .filter_map(|l| flag_of(l.trim_start().split("  ").next().unwrap()))
        .collect();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // Every `--name` in the first cell of the flag table's rows.
    let in_readme: std::collections::BTreeSet<String> = readme
        .lines()
        .filter(|l| l.starts_with("| `-"))
        .flat_map(|l| {
            let cell = l.split('|').nth(1).unwrap_or("");
            cell.split('`')
                .filter_map(|c| flag_of(c.split(' ').next().unwrap_or("")))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(in_help.len() >= 20, "{in_help:?}");
    assert_eq!(in_help, in_readme, "--help against the README's flag table");
    // Every flag of --help is accepted by the parser (a value where it takes one).
    for f in &in_help {
        let (code, err) = run_relay(&[&format!("--{f}"), "x", "--version"]);
        assert!(
            !err.contains("unknown flag"),
            "--{f} is in --help but the parser does not know it: {err} ({code:?})"
        );
    }
}
