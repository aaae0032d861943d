//! The last seconds in memory (issue 34): `/snapshot?ago=` and `?fresh=1`, `/clip` as an AVI
//! every player opens and as multipart, the byte cap under large frames, the clip limit, and
//! hostile parameters. Real upstreams: the test upstream (numbered frames on a 10 fps clock)
//! and ffmpeg as a camera command; real readers: our parser and ffprobe.

use mjpeg_relay::parser::{Event, Parser};
use mjpeg_relay::testjpeg::{is_whole_jpeg, seq_of};
use mjpeg_testkit::*;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn timestamp_of(headers: &[(String, String)]) -> f64 {
    header(headers, "x-timestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no X-Timestamp in {headers:?}"))
}

/// A relay fed by the test upstream at 10 fps for `secs`; the upstream and the relay.
fn fed(extra: &[&str], secs: u64, base: usize) -> (Relay, Upstream) {
    let mut args = vec!["--source", "tcp-listen:127.0.0.1:0"];
    args.extend_from_slice(extra);
    let relay = Relay::start(&args);
    let up = Upstream::start(relay.upstream.as_ref().unwrap(), 10.0, secs * 10, base);
    (relay, up)
}

#[test]
fn a_snapshot_from_seconds_ago_and_a_fresh_one() {
    let (relay, _up) = fed(&[], 60, 500);
    std::thread::sleep(Duration::from_millis(3500));
    // ?ago=: within one frame interval (0.1 s) of what was asked, and an older frame than the
    // newest (the control: the plain snapshot is the newest).
    for ago in [0.5, 1.0, 2.5] {
        let asked = now_s();
        let (code, headers, body) = get(&relay.http, &format!("/snapshot?ago={ago}"));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        assert!(is_whole_jpeg(&body));
        let ts = timestamp_of(&headers);
        let off = ts - (asked - ago);
        assert!(
            off.abs() <= 0.12,
            "?ago={ago}: the frame is {off:+.3} s off"
        );
        assert!(header(&headers, "last-modified").is_some_and(|d| d.ends_with(" GMT")));
        let age: u64 = header(&headers, "age").unwrap().parse().unwrap();
        assert!(
            age as f64 <= ago + 1.0 && age as f64 >= ago - 1.0,
            "Age {age} for {ago}"
        );
        let (_, h_now, now_body) = get(&relay.http, "/snapshot");
        assert!(
            seq_of(&now_body) > seq_of(&body),
            "?ago={ago} gave the newest"
        );
        assert!(timestamp_of(&h_now) > ts);
    }
    // Past the history's reach: a 404 that says how far back it reaches.
    let (code, _, body) = get(&relay.http, "/snapshot?ago=600");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("reaches back"), "{body}");
    // ?fresh=1: completed after the request arrived (the newest, when it is older, is not).
    for _ in 0..3 {
        let asked = now_s();
        let (code, headers, _) = get(&relay.http, "/snapshot?fresh=1");
        assert_eq!(code, 200);
        let ts = timestamp_of(&headers);
        assert!(
            ts > asked,
            "fresh frame {ts} is older than the request {asked}"
        );
        assert!(
            ts - asked < 0.5,
            "fresh frame {:.3} s after the request",
            ts - asked
        );
    }
}

/// The parts of a finite multipart body, by our own parser.
fn parts(body: &[u8]) -> Vec<Vec<u8>> {
    let mut parser = Parser::new(64 << 20);
    let mut out = Vec::new();
    parser.push(body, &mut |e| {
        if let Event::Frame(f) = e {
            out.push(f);
        }
    });
    out
}

/// What ffprobe says of a file's video stream after decoding every frame.
fn ffprobe(file: &std::path::Path) -> String {
    let out = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,r_frame_rate",
            "-of",
            "default=nw=1",
            file.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    let probe = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{probe} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    probe
}

#[test]
fn a_clip_of_the_last_seconds_plays_in_ffprobe_and_reads_as_multipart() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let relay = Relay::start(&[
        "--source",
        "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=15 -c:v mjpeg \
         -q:v 5 -f mjpeg -",
    ]);
    std::thread::sleep(Duration::from_millis(5000));
    let (code, headers, body) = get(&relay.http, "/clip?last=3");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "content-type"), Some("video/x-msvideo"));
    let disposition = header(&headers, "content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=default-") && disposition.ends_with(".avi"),
        "{disposition}"
    );
    let frames: usize = header(&headers, "x-frames").unwrap().parse().unwrap();
    assert!(
        (44..=46).contains(&frames),
        "{frames} frames in 3 s at 15 fps"
    );
    let dir = TempDir::new("clip");
    let file = dir.0.join("clip.avi");
    std::fs::write(&file, &body).unwrap();
    let probe = ffprobe(&file);
    assert!(probe.contains("codec_name=mjpeg"), "{probe}");
    assert!(
        probe.contains("width=320") && probe.contains("height=240"),
        "{probe}"
    );
    assert!(probe.contains("r_frame_rate=15/1"), "{probe}");
    // Every frame decodes.
    assert!(
        probe.contains(&format!("nb_read_frames={frames}")),
        "{probe}"
    );
    // The same seconds for programs: whole JPEGs, timestamps in order.
    let (code, headers, body) = get(&relay.http, "/clip?last=3&format=multipart");
    assert_eq!(code, 200);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("multipart/x-mixed-replace;boundary="));
    let got = parts(&body);
    assert!((44..=46).contains(&got.len()), "{} parts", got.len());
    assert!(got.iter().all(|j| is_whole_jpeg(j)));
    let text = String::from_utf8_lossy(&body);
    let stamps: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("X-Timestamp: "))
        .map(|t| t.trim().parse().unwrap())
        .collect();
    assert_eq!(stamps.len(), got.len());
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "timestamps not increasing"
    );
    assert!(text.trim_end().ends_with("--"), "the body is closed");
    // ?width=160: the same frames at a quarter of the size, every one decodes (the control
    // for the size: the clip above is 320x240).
    let (code, headers, body) = get(&relay.http, "/clip?last=3&width=160");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let small: usize = header(&headers, "x-frames").unwrap().parse().unwrap();
    assert!((44..=46).contains(&small), "{small} frames at 160 px");
    let small_file = dir.0.join("small.avi");
    std::fs::write(&small_file, &body).unwrap();
    let probe = ffprobe(&small_file);
    assert!(
        probe.contains("width=160") && probe.contains("height=120"),
        "{probe}"
    );
    assert!(
        probe.contains(&format!("nb_read_frames={small}")),
        "{probe}"
    );
    // ?from=&to= in capture times: exactly the frames between.
    let (from, to) = (stamps[5], stamps[20]);
    let (code, _, body) = get(
        &relay.http,
        &format!("/clip?from={from}&to={to}&format=multipart"),
    );
    assert_eq!(code, 200);
    assert_eq!(parts(&body).len(), 16);
}

#[test]
fn the_byte_cap_holds_under_large_frames() {
    // 1.5 MB frames (a 4K camera's), 10 fps, 4 MiB of history: two frames at most.
    let (relay, _up) = fed(
        &["--history-bytes", "4M", "--max-frame-bytes", "4M"],
        30,
        1_500_000,
    );
    let mut max_seen = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(150));
        let st = relay.status();
        let h = &st["streams"][0]["history"];
        let bytes = h["bytes"].as_u64().unwrap();
        assert!(bytes <= 4 << 20, "{h}");
        max_seen = max_seen.max(h["frames"].as_u64().unwrap());
    }
    assert!((1..=2).contains(&max_seen), "{max_seen} frames held");
    // What it holds is served (the control: the cap did not just drop everything).
    let (code, _, body) = get(&relay.http, "/snapshot?ago=0.05");
    assert_eq!(code, 200);
    assert!(body.len() > 1_500_000);
    let (_, _, metrics) = get(&relay.http, "/metrics");
    assert!(
        String::from_utf8_lossy(&metrics).contains("mjpeg_relay_history_bytes{stream=\"default\"}")
    );
}

#[test]
fn hostile_parameters_get_400_and_clips_at_once_are_bounded() {
    let (relay, _up) = fed(&["--send-timeout", "2"], 60, 20_000);
    std::thread::sleep(Duration::from_millis(2500));
    for path in [
        "/snapshot?ago=-1",
        "/snapshot?ago=NaN",
        "/snapshot?ago=inf",
        "/snapshot?ago=1e308",
        "/snapshot?ago=abc",
        "/snapshot?ago=",
        "/snapshot?ago=1&fresh=1",
        "/snapshot?fresh=2",
        "/clip",
        "/clip?last=-5",
        "/clip?last=NaN",
        "/clip?last=99999999",
        "/clip?from=10&to=5",
        "/clip?from=-1&to=5",
        "/clip?from=0&to=1e300",
        "/clip?last=1&from=0",
        "/clip?last=1&format=mp4",
        "/clip?last=1&size=auto",
        "/clip?last=1&width=0",
    ] {
        let (code, _, body) = get(&relay.http, path);
        assert_eq!(code, 400, "{path}: {}", String::from_utf8_lossy(&body));
    }
    // Four clips whose readers do not read hold the four places; a fifth is told to wait;
    // once they are dropped (--send-timeout) a clip is served again.
    let stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut s = connect(&relay.http, Some(4096));
            send_get(&mut s, "/clip?last=2", "curl/8.0");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (code, headers, _) = get(&relay.http, "/clip?last=1");
    assert_eq!(code, 503);
    assert!(header(&headers, "retry-after").is_some());
    // The stream itself is unaffected meanwhile.
    let (code, _, _) = get(&relay.http, "/snapshot");
    assert_eq!(code, 200);
    // Each stalled write fails at --send-timeout (2 s), then the close lingers briefly.
    let mut code = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        code = get(&relay.http, "/clip?last=1").0;
        if code == 200 {
            break;
        }
    }
    assert_eq!(code, 200, "{}", relay.log_text());
    drop(stalled);
}

#[test]
fn without_history_the_endpoints_say_so() {
    let (relay, _up) = fed(&["--history", "0"], 20, 500);
    std::thread::sleep(Duration::from_millis(1000));
    for path in ["/snapshot?ago=0.5", "/clip?last=1"] {
        let (code, _, body) = get(&relay.http, path);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(code, 404, "{path}: {body}");
        assert!(body.contains("--history 0"), "{body}");
    }
    assert!(relay.status()["streams"][0]["history"].is_null());
    // The control: the newest frame is still there.
    let (code, _, _) = get(&relay.http, "/snapshot");
    assert_eq!(code, 200);
}

/// `--warmup N` (issue 34 item 3): the first N frames of every connection reach nobody, not
/// the history either; counted. The control: the same relay without it keeps frame 1.
#[test]
fn warmup_discards_the_first_frames_of_every_connection() {
    let first_kept = |extra: &[&str]| {
        let (relay, up) = fed(extra, 2, 500);
        std::thread::sleep(Duration::from_millis(2600));
        drop(up);
        let (code, _, body) = get(&relay.http, "/clip?last=60&format=multipart");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let seqs: Vec<u64> = parts(&body).iter().filter_map(|f| seq_of(f)).collect();
        let discarded = relay.status()["streams"][0]["source"]["warmup_discarded"]
            .as_u64()
            .unwrap();
        (seqs.first().copied(), seqs.len(), discarded, relay)
    };
    let (first, n, discarded, _) = first_kept(&[]);
    assert_eq!((first, n, discarded), (Some(1), 20, 0));
    let (first, n, discarded, relay) = first_kept(&["--warmup", "5"]);
    assert_eq!((first, n, discarded), (Some(6), 15, 5));
    // A new connection warms up again.
    let up = Upstream::start_from(relay.upstream.as_ref().unwrap(), 10.0, 101, 10, 500);
    std::thread::sleep(Duration::from_millis(1500));
    drop(up);
    let st = relay.status();
    assert_eq!(st["streams"][0]["source"]["warmup_discarded"], 10, "{st}");
    let (_, _, body) = get(&relay.http, "/clip?last=60&format=multipart");
    let seqs: Vec<u64> = parts(&body).iter().filter_map(|f| seq_of(f)).collect();
    assert!(
        seqs.contains(&106) && !seqs.iter().any(|s| (101..106).contains(s)),
        "{seqs:?}"
    );
}

/// Reads `path` for `secs` as curl would (the framed layout): each part's frame number,
/// whether the part said `X-Replay: 1`, and when its last byte came in.
fn read_parts(addr: &str, path: &str, secs: f64) -> Vec<(u64, bool, f64)> {
    use std::io::Read;
    let mut s = connect(addr, None);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.0\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t0 = std::time::Instant::now();
    // The body, and after each read how much of it had come and when.
    let (mut raw, mut reads) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 65536];
    while t0.elapsed().as_secs_f64() < secs {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                reads.push((raw.len(), t0.elapsed().as_secs_f64()));
            }
            Err(_) => {}
        }
    }
    let boundary = format!("--{}\r\n", mjpeg_relay::multipart::BOUNDARY);
    let mut parts = Vec::new();
    let mut at = 0;
    let starts: Vec<usize> = raw
        .windows(boundary.len())
        .enumerate()
        .filter(|(_, w)| *w == boundary.as_bytes())
        .map(|(i, _)| i + boundary.len())
        .collect();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(raw.len(), |&n| n - boundary.len());
        let part = &raw[start.max(at)..end];
        at = end;
        let Some(h) = part.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..h]);
        let Some(seq) = seq_of(&part[h + 4..]) else {
            continue; // not complete yet
        };
        let when = reads.iter().find(|(n, _)| *n >= end).map_or(secs, |r| r.1);
        parts.push((seq, head.contains("X-Replay: 1"), when));
    }
    parts
}

/// `/stream?rewind=SECONDS` (issue 34 item 5): the last seconds at their own pace, marked,
/// then live. The control: without it the first frame is current and nothing is marked.
#[test]
fn rewind_replays_the_last_seconds_then_goes_live() {
    let (relay, _up) = fed(&[], 60, 500);
    std::thread::sleep(Duration::from_millis(3500));
    let newest = || seq_of(&get(&relay.http, "/snapshot").2).unwrap();
    let at_start = newest();
    let got = read_parts(&relay.http, "/stream?rewind=2", 4.0);
    let replayed: Vec<_> = got.iter().filter(|p| p.1).collect();
    assert!(
        (18..=22).contains(&replayed.len()),
        "{} replayed: {got:?}",
        replayed.len()
    );
    // Oldest first, in order, from two seconds back.
    let first = replayed[0].0;
    assert!(
        first + 22 >= at_start && first + 18 <= at_start,
        "{first} vs {at_start}"
    );
    assert!(got.windows(2).all(|w| w[1].0 > w[0].0), "order: {got:?}");
    // At their pace: 2 s of frames take well over a second, not a burst.
    let span = replayed.last().unwrap().2 - replayed[0].2;
    assert!(span > 1.2, "replayed in {span:.2} s");
    // Then live: unmarked, and caught up with the newest.
    let live: Vec<_> = got.iter().filter(|p| !p.1).collect();
    assert!(!live.is_empty() && live.last().unwrap().0 + 3 >= newest());
    let control = read_parts(&relay.http, "/stream", 1.0);
    assert!(control.iter().all(|p| !p.1), "{control:?}");
    assert!(control[0].0 + 2 >= newest() - 10, "{control:?}");
    for bad in [
        "/stream?rewind=-1",
        "/stream?rewind=NaN",
        "/stream?rewind=1e99",
    ] {
        assert_eq!(get(&relay.http, bad).0, 400, "{bad}");
    }
}

/// Issue 34 item 2: an edge relay pulling an origin keeps the camera's time, the origin's
/// `X-Timestamp`, not its own arrival time, on every frame it serves and in its history. (On
/// the edge alone each frame would be a few milliseconds later: the control is that the
/// timestamps compared are of the same frames, matched by their numbers.)
#[test]
fn a_chained_relay_keeps_the_cameras_time() {
    let (origin, _up) = fed(&[], 60, 500);
    let edge = Relay::start(&["--source", &format!("http://{}/stream", origin.http)]);
    std::thread::sleep(Duration::from_millis(3000));
    let stamped = |relay: &Relay| -> std::collections::BTreeMap<u64, String> {
        let (code, _, body) = get(&relay.http, "/clip?last=10&format=multipart");
        assert_eq!(code, 200);
        let text = String::from_utf8_lossy(&body).to_string();
        let stamps: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("X-Timestamp: "))
            .map(|t| t.trim().to_string())
            .collect();
        let seqs: Vec<u64> = parts(&body).iter().filter_map(|f| seq_of(f)).collect();
        assert_eq!(stamps.len(), seqs.len());
        seqs.into_iter().zip(stamps).collect()
    };
    let at_origin = stamped(&origin);
    let at_edge = stamped(&edge);
    let common: Vec<u64> = at_edge
        .keys()
        .filter(|k| at_origin.contains_key(k))
        .copied()
        .collect();
    assert!(common.len() >= 10, "{} frames in common", common.len());
    for k in common {
        assert_eq!(at_edge[&k], at_origin[&k], "frame {k}");
    }
    // And /snapshot says the same time.
    let (_, h_edge, body) = get(&edge.http, "/snapshot?ago=1");
    let k = seq_of(&body).unwrap();
    if let Some(t) = at_origin.get(&k) {
        assert_eq!(header(&h_edge, "x-timestamp"), Some(t.as_str()));
    }
}
