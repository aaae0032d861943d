//! `?size=auto` on the links viewers have (issue 30): a receiver that delays its ACKs on a
//! fast link keeps the camera's size (it got 80x60 before), and a slow reader of a large
//! camera at a low rate steps down to a size that carries the rate (it stayed at full size,
//! at 1.8 frames/s, before). Each with its control: the same reader of the full size on the
//! same link, which does not carry the rate.

use mjpeg_testkit::delayline::{DelayLine, Shape, SERVER};
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

/// How a viewer reads: at most `rate` bytes/s (`None`: as fast as it can), with the receive
/// buffer `rcvbuf`, delaying its ACKs when `delay_acks`; over a delay line when `line`.
#[derive(Clone, Copy)]
struct Reader<'l> {
    rate: Option<f64>,
    rcvbuf: Option<i32>,
    delay_acks: bool,
    line: Option<&'l DelayLine>,
}

const FAST: Reader = Reader {
    rate: None,
    rcvbuf: None,
    delay_acks: false,
    line: None,
};

/// Reads `path` for `run` as `reader` does; counts frames over the last `tail` and follows
/// this viewer's size in `/status`.
fn watch(relay: &Relay, path: &str, reader: Reader, run: Duration, tail: Duration) -> Seen {
    let Reader {
        rate,
        rcvbuf,
        delay_acks,
        line,
    } = reader;
    let mut client = match line {
        Some(line) => {
            let sock = line.connect(relay.http.parse().unwrap(), rcvbuf);
            StreamClient::on(sock, &relay.http, path, "curl/8.0")
        }
        None => StreamClient::open(&relay.http, path, "curl/8.0", rcvbuf),
    };
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
    let relay = Relay::start(&["--size", "640x480", "--fps", "30", "--log-level", "trace"]);
    let seen = watch(
        &relay,
        "/stream?size=auto",
        Reader {
            delay_acks: true,
            ..FAST
        },
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
    let link = Reader {
        rate: Some(300_000.0),
        rcvbuf: Some(32 * 1024),
        ..FAST
    };
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

/// Set in the copy of this test binary that runs inside a private network namespace.
const IN_NETNS: &str = "MJPEG_AUTO_TEST_IN_NETNS";

/// The round trip a connection over `line` measures (the kernel's smoothed RTT), in ms.
fn rtt_ms(sock: &std::net::TcpStream) -> f64 {
    // SAFETY: an all-zero tcp_info is valid; getsockopt fills at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: TCP_INFO into a tcp_info we own, on a socket we own.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    f64::from(info.tcpi_rtt) / 1000.0
}

/// A 150 ms round trip (4G, a satellite hop), as wide as the camera needs: the relay keeps
/// the camera's size. Before, every frame was still in flight when the next was ready, every
/// interval looked busy at the rate the relay sent, and `auto` walked down to 1/8. The
/// controls: the line's round trip is measured at 150 ms, and the same line at 2 Mbit/s does
/// not carry the full size, where `auto` steps down and carries the rate.
#[test]
fn a_long_round_trip_keeps_the_size_its_link_carries() {
    let name = "a_long_round_trip_keeps_the_size_its_link_carries";
    if mjpeg_testkit::reexec_in_netns(IN_NETNS, name) {
        return;
    }
    let (run, tail) = (Duration::from_secs(12), Duration::from_secs(4));
    for (rate, what) in [(None, "unshaped"), (Some(250_000.0), "2 Mbit/s")] {
        let line = DelayLine::start(Shape {
            one_way: Duration::from_millis(75),
            rate,
            queue: Duration::from_millis(300),
        });
        let relay = Relay::start_on(
            &format!("{SERVER}:0"),
            &["--size", "640x480", "--fps", "30"],
        );
        let probe = line.connect(relay.http.parse().unwrap(), None);
        std::thread::sleep(Duration::from_millis(200));
        let rtt = rtt_ms(&probe);
        assert!((140.0..400.0).contains(&rtt), "{what}: round trip {rtt} ms");
        drop(probe);
        let reader = Reader {
            line: Some(&line),
            ..FAST
        };
        let full = watch(&relay, "/stream?size=full", reader, run, tail);
        let auto = watch(&relay, "/stream?size=auto", reader, run, tail);
        eprintln!(
            "150 ms, {what}: full size {:.1} frames/s; auto {:.1} frames/s, sizes {:?}",
            full.fps, auto.fps, auto.sizes
        );
        match rate {
            None => {
                assert!(
                    full.fps >= 24.0,
                    "{what}: the link carries full size: {:.1}",
                    full.fps
                );
                // Ends, and stays, at the camera's size (a connection opening its window
                // on a long round trip can look like a slow link for a moment; then a try
                // of the larger size brings it back within seconds).
                assert_eq!(
                    auto.sizes.last().map(String::as_str),
                    Some("full"),
                    "{what}"
                );
                assert!(auto.sizes.len() <= 3, "{what}: {:?}", auto.sizes);
                assert!(auto.fps >= 24.0, "{what}: {:.1} frames/s", auto.fps);
            }
            Some(_) => {
                assert!(
                    full.fps < 20.0,
                    "{what}: the control: {:.1} frames/s",
                    full.fps
                );
                assert_ne!(
                    auto.sizes.last().map(String::as_str),
                    Some("full"),
                    "{what}"
                );
                assert!(
                    auto.fps >= 24.0,
                    "{what}: {:.1} frames/s at {:?}",
                    auto.fps,
                    auto.sizes
                );
            }
        }
    }
}
