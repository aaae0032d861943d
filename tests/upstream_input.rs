//! What an upstream sends that is broken or hostile, end to end through the parser: a
//! disconnect inside a frame, garbage between parts, a boundary that changes, a
//! Content-Length that lies, endless headers, a frame far over the limit, a silent
//! connection, a tiny JPEG with a comment first. Each asserts that the fault is counted or
//! logged, that a viewer is served live afterwards, and that threads and descriptors return
//! to where they were.

use mjpeg_relay::testjpeg::{is_whole_jpeg, seq_of};
use mjpeg_testkit::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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
    Relay::with_viewer(&args)
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
    relay.settles_to(base);
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
    relay.settles_to(base);
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
    relay.settles_to(base);
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
    relay.settles_to(base);
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
    relay.settles_to(base);
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
    relay.settles_to(base);
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
    relay.settles_to(base);
}

// ---------------------------------------------------------------------------------------------
// Client faults

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
