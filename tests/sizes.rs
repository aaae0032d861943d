//! Per-viewer sizes (issue 25): `?width=`/`?height=` served at the size at or above (1/2, 1/4,
//! 1/8 of the camera's), one transcoder per size shared by its viewers and gone when nobody
//! watches it, a frame that does not decode skipped without stopping the size, and
//! `?size=auto` following a shaped link down and back up (in a network namespace of its own).

use mjpeg_relay::jpeg::dimensions;
use mjpeg_relay::testjpeg::seq_of;
use mjpeg_testkit::{
    connect_from, gst_part, has_huffman_tables, require_tool, run_with_timeout, sh, shape_port,
    vga, webcam_frames, Relay, StreamClient, TempDir,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Pushes `frames` into the relay's `tcp-listen` source at `fps` from a thread.
fn push(relay: &Relay, frames: Vec<Vec<u8>>, fps: f64) -> std::thread::JoinHandle<()> {
    let mut up = TcpStream::connect(relay.upstream.as_ref().unwrap()).unwrap();
    std::thread::spawn(move || {
        let start = Instant::now();
        for (i, f) in frames.iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / fps);
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            if up.write_all(&gst_part(f)).is_err() {
                return;
            }
        }
    })
}

fn frames(client: &mut StreamClient, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            client
                .next_frame(Duration::from_secs(10))
                .unwrap_or_else(|| panic!("stream ended after {k} frames"))
        })
        .collect()
}

/// Whether ffmpeg decodes `jpeg` without a word of complaint.
fn ffmpeg_decodes(jpeg: &[u8]) -> bool {
    let dir = TempDir::new("sizes");
    let f = dir.0.join("frame.jpg");
    std::fs::write(&f, jpeg).unwrap();
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&f)
            .args(["-f", "null", "-"]),
        Duration::from_secs(20),
    );
    out.status.success() && out.stderr.is_empty()
}

#[test]
fn a_width_is_served_at_the_size_at_or_above_in_order_whole_and_decodable() {
    require_tool("ffmpeg");
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    // Asked before the camera has sent anything: the answer comes at once, and the size is
    // chosen at the first frame.
    let asked = Instant::now();
    let mut half = StreamClient::open(&relay.http, "/stream?width=320", "curl/8.0", None);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    let upstream = push(&relay, (1..=400).map(vga).collect(), 30.0);
    let got = frames(&mut half, 20);
    let seqs: Vec<u64> = got.iter().map(|f| seq_of(f).unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    for f in &got {
        assert_eq!(dimensions(f), Some((320, 240)));
    }
    assert!(
        ffmpeg_decodes(&got[got.len() - 1]),
        "ffmpeg decodes a 320x240 frame"
    );
    // The size at or above what is asked, never below; the camera's own frames untouched.
    for (query, want) in [
        ("", (640, 480)),
        ("?width=321", (640, 480)),
        ("?height=120", (160, 120)),
        ("?width=1&height=1", (80, 60)),
        ("?size=full", (640, 480)),
    ] {
        let mut c = StreamClient::open(&relay.http, &format!("/stream{query}"), "curl/8.0", None);
        let f = frames(&mut c, 2).pop().unwrap();
        assert_eq!(dimensions(&f), Some(want), "{query}");
        if query.is_empty() {
            assert!(
                f.len() > 10_000,
                "the source size is passed through as it came"
            );
        }
    }
    let (code, _, snap) = mjpeg_testkit::get(&relay.http, "/snapshot?width=150");
    assert_eq!(code, 200);
    assert_eq!(dimensions(&snap), Some((160, 120)));
    assert!(ffmpeg_decodes(&snap));
    let mut mux = StreamClient::open(
        &relay.http,
        "/mux?streams=default&width=160",
        "curl/8.0",
        None,
    );
    assert_eq!(dimensions(&frames(&mut mux, 2)[1]), Some((160, 120)));
    // Bad values are refused with a reason.
    for bad in ["width=0", "size=auto&width=5", "quality=0", "size=huge"] {
        let (code, _, body) = mjpeg_testkit::get(&relay.http, &format!("/stream?{bad}"));
        assert_eq!(code, 400, "{bad}: {}", String::from_utf8_lossy(&body));
    }
    let st = relay.status();
    let sizes = st["streams"][0]["sizes"].as_array().unwrap().clone();
    assert!(
        sizes
            .iter()
            .any(|s| s["size"] == "1/2" && s["width"] == 320),
        "{sizes:?}"
    );
    drop(upstream);
}

#[test]
fn viewers_of_a_size_share_one_transcoder_that_ends_when_nobody_watches() {
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let upstream = push(&relay, (1..=600).map(vga).collect(), 30.0);
    // The control first: no viewer of a smaller size, no transcoder.
    let mut full = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    frames(&mut full, 5);
    assert_eq!(relay.transcoders(), Vec::<String>::new());
    let mut a = StreamClient::open(&relay.http, "/stream?width=320", "curl/8.0", None);
    let mut b = StreamClient::open(&relay.http, "/stream?width=300", "curl/8.0", None);
    frames(&mut a, 5);
    frames(&mut b, 5);
    assert_eq!(relay.transcoders(), ["tier-default-2"], "one for both");
    let st = relay.status();
    let sizes = &st["streams"][0]["sizes"];
    assert_eq!(sizes.as_array().unwrap().len(), 1, "{sizes}");
    assert_eq!(sizes[0]["viewers"], 2, "{sizes}");
    let clients = st["streams"][0]["clients"].as_array().unwrap();
    let halves = clients.iter().filter(|c| c["size"] == "1/2").count();
    assert_eq!(halves, 2, "{clients:?}");
    let metrics = String::from_utf8(mjpeg_testkit::get(&relay.http, "/metrics").2).unwrap();
    assert!(
        metrics
            .contains("mjpeg_relay_size_viewers{stream=\"default\",size=\"1/2\",quality=\"80\"} 2"),
        "{metrics}"
    );
    drop(a);
    frames(&mut b, 10);
    assert_eq!(
        relay.transcoders(),
        ["tier-default-2"],
        "one viewer left: it stays"
    );
    drop(b);
    // Gone about a second after the last viewer (LINGER), with its CPU.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !relay.transcoders().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        relay.transcoders(),
        Vec::<String>::new(),
        "no viewer, no transcoder"
    );
    assert_eq!(relay.status()["streams"][0]["sizes"], serde_json::json!([]));
    assert!(relay.wait_log(
        "stopped the size (nobody watches it)",
        Duration::from_secs(1)
    ));
    // The full-size viewer never noticed.
    frames(&mut full, 5);
    drop(upstream);
}

/// The sizes running now, summed: (frames made, frames decoded by the sizes themselves).
fn made_and_decoded(relay: &Relay) -> (u64, u64) {
    let st = relay.status();
    let sizes = st["streams"][0]["sizes"].as_array().unwrap().clone();
    let sum = |key: &str| sizes.iter().map(|s| s[key].as_u64().unwrap()).sum::<u64>();
    (sum("frames"), sum("decoded"))
}

#[test]
fn the_sizes_of_a_stream_share_one_decode_per_camera_frame() {
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let upstream = push(&relay, (1..=900).map(vga).collect(), 15.0);
    // The control: one size decodes every frame it makes itself.
    let mut one = StreamClient::open(&relay.http, "/stream?width=320", "curl/8.0", None);
    frames(&mut one, 20);
    let (made, decoded) = made_and_decoded(&relay);
    assert!(
        made >= 20 && decoded == made,
        "one size: {made} made, {decoded} decoded"
    );
    // Two more: 1/4 and 1/8, three transcoders in all (what one address may start).
    let mut others: Vec<StreamClient> = ["width=160", "width=80"]
        .iter()
        .map(|q| StreamClient::open(&relay.http, &format!("/stream?{q}"), "curl/8.0", None))
        .collect();
    for c in &mut others {
        frames(c, 3);
    }
    let (made0, decoded0) = made_and_decoded(&relay);
    let mut seen = Vec::new();
    for _ in 0..30 {
        for (c, want) in std::iter::once(&mut one).chain(others.iter_mut()).zip([
            (320, 240),
            (160, 120),
            (80, 60),
        ]) {
            let f = frames(c, 1).pop().unwrap();
            assert_eq!(dimensions(&f), Some(want));
            seen.push(f);
        }
    }
    assert!(seen.iter().step_by(5).all(|f| ffmpeg_decodes(f)));
    let (made1, decoded1) = made_and_decoded(&relay);
    let (made, decoded) = (made1 - made0, decoded1 - decoded0);
    // Three sizes of the same frames: one decode serves all three (a size that fell behind
    // and took a newer frame than the others decodes that one itself, hence not exactly 1/3).
    assert!(made >= 80, "{made} frames made");
    assert!(
        decoded * 2 < made,
        "{decoded} decodes for {made} frames made at three sizes"
    );
    eprintln!("{decoded} decodes for {made} frames made at three sizes");
    drop(upstream);
}

#[test]
fn a_frame_that_does_not_decode_is_skipped_by_the_size_which_goes_on() {
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    // Frame 40 keeps its markers (the parser passes it on) but its picture data is noise.
    let mut bad = vga(40);
    let sos = bad.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let end = bad.len() - 2;
    for (k, b) in bad[sos + 20..end].iter_mut().enumerate() {
        *b = (k * 37 % 251) as u8 & 0x7F;
    }
    bad[sos + 4] = 9; // a component count no picture has
    let list: Vec<Vec<u8>> = (1..=200)
        .map(|s| if s == 40 { bad.clone() } else { vga(s) })
        .collect();
    // Pushed first (the size is chosen from the first frame's), watched from frame 2 or so.
    let upstream = push(&relay, list, 20.0);
    let mut small = StreamClient::open(&relay.http, "/stream?width=160", "curl/8.0", None);
    let mut full = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    // Both read at once: a viewer that stops reading skips frames, and 40 must not be skipped.
    let full_reader = std::thread::spawn(move || {
        let got = frames(&mut full, 60);
        got.iter().map(|f| seq_of(f).unwrap()).collect::<Vec<u64>>()
    });
    let small_seqs: Vec<u64> = frames(&mut small, 60)
        .iter()
        .map(|f| seq_of(f).unwrap())
        .collect();
    let full_seqs = full_reader.join().unwrap();
    assert!(
        full_seqs.contains(&40),
        "the control: the full size passes it on as it came: {full_seqs:?}"
    );
    assert!(!small_seqs.contains(&40), "{small_seqs:?}");
    assert!(
        small_seqs.iter().any(|&s| s > 45),
        "the size went on: {small_seqs:?}"
    );
    let size = &relay.status()["streams"][0]["sizes"][0];
    assert_eq!(size["failed"], 1, "{size}");
    assert!(relay.wait_log(
        "skipped a frame that could not be made smaller",
        Duration::from_secs(1)
    ));
    drop(upstream);
}

#[test]
fn auto_on_a_fast_link_serves_the_camera_frames_and_transcodes_nothing() {
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let upstream = push(&relay, (1..=200).map(vga).collect(), 30.0);
    let mut auto = StreamClient::open(&relay.http, "/stream?size=auto", "curl/8.0", None);
    for f in frames(&mut auto, 90) {
        assert_eq!(dimensions(&f), Some((640, 480)));
    }
    assert_eq!(relay.status()["streams"][0]["sizes"], serde_json::json!([]));
    assert_eq!(
        relay.status()["streams"][0]["clients"][0]["size_auto"],
        true
    );
    assert_eq!(relay.transcoders(), Vec::<String>::new());
    drop(upstream);
}

/// Traffic to `port` through a 2 Mbit/s link (see the testkit).
fn shape(port: u16) {
    shape_port(port, "2mbit");
}

/// A viewer from local port `port` (the shaped one) reading `path`, noting when each frame
/// arrived and its size.
struct SizeLog {
    sock: TcpStream,
    parser: mjpeg_relay::parser::Parser,
    start: Instant,
    frames: Vec<(Duration, (u16, u16))>,
}

impl SizeLog {
    fn open(relay: &Relay, port: u16, path: &str) -> SizeLog {
        let mut sock = connect_from("127.0.0.1", port, &relay.http, Some(16 * 1024));
        write!(
            sock,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.0\r\n\r\n"
        )
        .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        SizeLog {
            sock,
            parser: mjpeg_relay::parser::Parser::new(8 << 20),
            start: Instant::now(),
            frames: Vec::new(),
        }
    }

    /// Reads until `until` after opening; the frames that arrived meanwhile.
    fn read_until(&mut self, until: Duration) -> &[(Duration, (u16, u16))] {
        let from = self.frames.len();
        let mut buf = vec![0u8; 64 * 1024];
        while self.start.elapsed() < until {
            let n = match self.sock.read(&mut buf) {
                Ok(0) => panic!("the stream ended"),
                Ok(n) => n,
                Err(_) => continue,
            };
            let (frames, start) = (&mut self.frames, self.start);
            self.parser.push(&buf[..n], &mut |e| {
                if let mjpeg_relay::parser::Event::Frame(f) = e {
                    frames.push((start.elapsed(), dimensions(&f).unwrap_or((0, 0))));
                }
            });
        }
        &self.frames[from..]
    }
}

/// `?size=auto` on a 2 Mbit/s link (the viewer's port shaped inside a namespace of its own):
/// the camera's 640x480 test pattern (16 KB a frame, 480 KB/s at 30 fps) does not fit, so the
/// viewer moves to a smaller size and gets (nearly) every frame; when the shaping is lifted it
/// returns to the camera's size. The control: a viewer of the full size on the same link gets
/// under 20 frames a second, so the shaping is what the sizes answer.
#[test]
fn auto_on_a_shaped_link_picks_a_smaller_size_and_returns_when_the_shaping_is_lifted() {
    if mjpeg_testkit::reexec_in_netns() {
        return;
    }
    sh("ip link set lo up");
    let relay = Relay::start(&["--source", "testsrc", "--fps", "30"]);
    let port = mjpeg_testkit::free_port();
    shape(port);
    let mut control = SizeLog::open(&relay, port, "/stream");
    control.read_until(Duration::from_secs(1));
    let last3 = control.read_until(Duration::from_secs(4));
    let control_fps = last3.len() as f64 / 3.0;
    eprintln!("full size on 2 Mbit/s: {control_fps:.1} frames/s");
    assert!(
        control_fps < 20.0,
        "the control: the link must be too slow for the full size"
    );
    assert!(control.frames.iter().all(|f| f.1 == (640, 480)));
    drop(control);
    // The viewer asks for auto: within a few seconds, a smaller size at nearly full rate.
    let port = mjpeg_testkit::free_port();
    let _ = Command::new("tc")
        .args(["qdisc", "del", "dev", "lo", "root"])
        .output();
    shape(port);
    let mut auto = SizeLog::open(&relay, port, "/stream?size=auto");
    auto.read_until(Duration::from_secs(10));
    let log = &auto.frames;
    let late: Vec<&(Duration, (u16, u16))> = log
        .iter()
        .filter(|(t, _)| *t >= Duration::from_secs(6))
        .collect();
    let fps = late.len() as f64 / 4.0;
    let small = late.iter().filter(|(_, d)| d.0 < 640).count();
    eprintln!(
        "auto on 2 Mbit/s, seconds 6-10: {fps:.1} frames/s, {small} of {} smaller",
        late.len()
    );
    assert!(
        small * 10 >= late.len() * 8,
        "mostly a smaller size: {late:?}"
    );
    assert!(fps >= 20.0, "at nearly the camera's rate: {fps:.1}");
    let st = relay.status();
    assert_ne!(st["streams"][0]["clients"][0]["size"], "full", "{st}");
    // The shaping lifted: back to the camera's size.
    sh("tc qdisc del dev lo root");
    let lifted = auto.start.elapsed();
    let mut back = None;
    while back.is_none() && auto.start.elapsed() < lifted + Duration::from_secs(60) {
        let until = auto.start.elapsed() + Duration::from_secs(1);
        let second = auto.read_until(until);
        if !second.is_empty() && second.iter().all(|(_, d)| *d == (640, 480)) {
            back = Some(auto.start.elapsed() - lifted);
        }
    }
    let log = &auto.frames;
    let back = back.unwrap_or_else(|| {
        panic!(
            "never back to 640x480: {:?}",
            &log[log.len().saturating_sub(20)..]
        )
    });
    eprintln!(
        "back to the camera's size {:.1} s after the shaping was lifted",
        back.as_secs_f64()
    );
}

/// Issue 30 item 2: USB webcams' frames (ffmpeg's MJPEG with the standard Huffman tables,
/// `-huffman default`, then taken out, as a UVC camera sends them) were refused by the decoder, so every smaller size of such a
/// camera showed nothing. Now the standard tables are put in: `?width=` serves them, and
/// `/snapshot` hands out a standalone JPEG. The control: the frames pushed have no tables.
#[test]
fn webcam_frames_without_huffman_tables_are_sized_and_saved_whole() {
    let bare = webcam_frames(30);
    assert!(bare
        .iter()
        .all(|f| !has_huffman_tables(f) && dimensions(f) == Some((640, 480))));
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let mut looped = Vec::new();
    for _ in 0..4 {
        looped.extend(bare.iter().cloned());
    }
    let _up = push(&relay, looped, 10.0);
    let mut viewer = StreamClient::open(&relay.http, "/stream?width=320", "curl/8.0", None);
    let got = frames(&mut viewer, 5);
    assert!(
        got.iter().all(|f| dimensions(f) == Some((320, 240))),
        "not 320x240"
    );
    assert!(ffmpeg_decodes(&got[4]));
    let (code, _, body) = mjpeg_testkit::get(&relay.http, "/snapshot");
    assert_eq!(code, 200);
    assert!(has_huffman_tables(&body), "the snapshot still lacks tables");
    assert!(ffmpeg_decodes(&body));
    let (code, _, small) = mjpeg_testkit::get(&relay.http, "/snapshot?width=160");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&small));
    assert_eq!(dimensions(&small), Some((160, 120)));
}
