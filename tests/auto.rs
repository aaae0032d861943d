//! `?size=auto` on the links viewers have (issue 30): a receiver that delays its ACKs on a
//! fast link keeps the camera's size (it got 80x60 before), and a slow reader of a large
//! camera at a low rate steps down to a size that carries the rate (it stayed at full size,
//! at 1.8 frames/s, before). Each with its control: the same reader of the full size on the
//! same link, which does not carry the rate.

use mjpeg_testkit::{Relay, StreamClient};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// What a viewer saw: frames received per second over the last `tail`, the sizes `/status`
/// gave it (each change once, in order) and the one it had at the end.
struct Seen {
    fps: f64,
    sizes: Vec<String>,
}

/// Reads `path` for `run`, at most `rate` bytes/s (`None`: as fast as it can), with the
/// receive buffer `rcvbuf`, with delayed ACKs when `delay_acks`; counts frames over the last
/// `tail` and follows this viewer's size in `/status`.
fn watch(
    relay: &Relay,
    path: &str,
    (rate, rcvbuf, delay_acks): (Option<f64>, Option<i32>, bool),
    run: Duration,
    tail: Duration,
) -> Seen {
    let mut client = StreamClient::open(&relay.http, path, "curl/8.0", rcvbuf);
    client
        .sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let fd = client.sock.as_raw_fd();
    let start = Instant::now();
    let (mut read, mut buf, mut frames) = (0f64, vec![0u8; 16 * 1024], Vec::new());
    let mut tail_frames = 0usize;
    let mut sizes: Vec<String> = Vec::new();
    let mut next_look = start;
    while start.elapsed() < run {
        if Instant::now() >= next_look {
            next_look += Duration::from_millis(250);
            let st = relay.status();
            let size = st["streams"][0]["clients"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["size_auto"] == true))
                .and_then(|c| c["size"].as_str())
                .map(str::to_string);
            if let Some(size) = size {
                if sizes.last() != Some(&size) {
                    sizes.push(size);
                }
            }
        }
        if let Some(rate) = rate {
            // A token bucket: no more than `rate` bytes/s on average.
            let allowed = rate * start.elapsed().as_secs_f64();
            if read >= allowed {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        }
        if delay_acks {
            let off: libc::c_int = 0;
            // SAFETY: setsockopt with an int on the client's own socket. Linux leaves delayed
            // ACK mode after some events, so it is set again before every read.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_QUICKACK,
                    (&off as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        let want = match rate {
            Some(r) => ((r * start.elapsed().as_secs_f64() - read) as usize).clamp(1, buf.len()),
            None => buf.len(),
        };
        match client.sock.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                read += n as f64;
                frames.clear();
                client.push_bytes(&buf[..n], &mut frames);
                if start.elapsed() >= run - tail {
                    tail_frames += frames.len();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{path}: {e}"),
        }
    }
    Seen {
        fps: tail_frames as f64 / tail.as_secs_f64(),
        sizes,
    }
}

#[test]
fn a_receiver_that_delays_its_acks_on_a_fast_link_keeps_the_cameras_size() {
    let relay = Relay::start(&["--size", "640x480", "--fps", "30"]);
    let seen = watch(
        &relay,
        "/stream?size=auto",
        (None, None, true),
        Duration::from_secs(10),
        Duration::from_secs(4),
    );
    // The relay before this went to 1/8 within seconds and stayed there.
    assert_eq!(seen.sizes, ["full"], "sizes: {:?}", seen.sizes);
    assert!(seen.fps >= 24.0, "{:.1} frames/s", seen.fps);
}

#[test]
fn a_slow_reader_of_a_large_camera_at_a_low_rate_steps_down_to_a_size_that_carries_it() {
    // 1280x720 at 10 fps, 160 KB frames (a camera's grain), read at 300 KB/s through a
    // small receive buffer.
    mjpeg_testkit::require_tool("ffmpeg");
    let relay = Relay::start(&[
        "--source",
        "exec:ffmpeg -loglevel error -re -f lavfi -i \
         testsrc2=size=1280x720:rate=10,noise=alls=12:allf=t -c:v mjpeg -q:v 5 -f mjpeg -",
        "--history",
        "0",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    let link = (Some(300_000.0), Some(32 * 1024), false);
    let (run, tail) = (Duration::from_secs(12), Duration::from_secs(5));
    // The control: the camera's own size on this link does not carry 10 frames/s.
    let full = watch(&relay, "/stream?size=full", link, run, tail);
    assert!(
        full.fps < 8.0,
        "the control: {:.1} frames/s at full size",
        full.fps
    );
    let auto = watch(&relay, "/stream?size=auto", link, run, tail);
    // The relay before this kept the full size (1.8 frames/s) for good.
    assert!(
        auto.sizes.len() >= 2 && auto.sizes[0] == "full",
        "sizes: {:?}",
        auto.sizes
    );
    assert!(
        auto.fps >= 8.0,
        "{:.1} frames/s at {:?}",
        auto.fps,
        auto.sizes
    );
    // Settled: at most one change after the first step down.
    assert!(auto.sizes.len() <= 3, "sizes: {:?}", auto.sizes);
}
