//! A viewer of `?size=auto` as the link tests and the benchmark's link matrix need one: it
//! reads at a rate, through a small receive buffer, with delayed ACKs, over a delay line,
//! and follows its own size in `/status` while it reads.

use crate::delayline::DelayLine;
use crate::{Relay, StreamClient};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// What a viewer saw: frames received per second over the last `tail`, the sizes `/status`
/// gave it (each change once, in order) and the one it had at the end.
pub struct Seen {
    /// Frames the viewer read a second over the tail.
    pub fps: f64,
    /// Frames the camera gave the relay a second over the same tail (`frames_in`): what
    /// the viewer could have had, on a machine that may be too busy for the camera's rate.
    pub source_fps: f64,
    pub sizes: Vec<String>,
    /// When each size in `sizes` began, from the start.
    pub changed_at: Vec<Duration>,
}

/// How a viewer reads: at most `rate` bytes/s (`None`: as fast as it can), with the receive
/// buffer `rcvbuf`, delaying its ACKs when `delay_acks`; over a delay line when `line`.
#[derive(Clone, Copy)]
pub struct Reader<'l> {
    pub rate: Option<f64>,
    pub rcvbuf: Option<i32>,
    pub delay_acks: bool,
    pub line: Option<&'l DelayLine>,
}

pub const FAST: Reader<'static> = Reader {
    rate: None,
    rcvbuf: None,
    delay_acks: false,
    line: None,
};

/// Reads `path` for `run` as `reader` does; counts frames over the last `tail` and follows
/// this viewer's size in `/status`.
pub fn watch(relay: &Relay, path: &str, reader: Reader, run: Duration, tail: Duration) -> Seen {
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
    let frames_in = || {
        relay.status()["streams"][0]["source"]["frames_in"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut tail_start_in = None;
    let mut sizes: Vec<String> = Vec::new();
    let mut changed_at = Vec::new();
    let mut next_look = start;
    while start.elapsed() < run {
        if tail_start_in.is_none() && start.elapsed() >= run - tail {
            tail_start_in = Some(frames_in());
        }
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
                    changed_at.push(start.elapsed());
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
    let made = frames_in().saturating_sub(tail_start_in.unwrap_or(0));
    Seen {
        fps: tail_frames as f64 / tail.as_secs_f64(),
        source_fps: made as f64 / tail.as_secs_f64(),
        sizes,
        changed_at,
    }
}
