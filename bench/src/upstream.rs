//! The upstream: real JPEG frames on absolute deadlines, each stamped with its sequence
//! number and send time in a COM segment, pushed to or served for the server under test.
use mjpeg_relay::source::testsrc;
use mjpeg_relay::testjpeg;
use mjpeg_testkit::gst_part;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

#[derive(Clone, Debug)]
pub(crate) enum UpMode {
    Push(String),
    Listen(String),
    ServeHttp(String),
}

/// Frames: a real WxH JPEG encoded once, with a COM segment `seq,send_us` and padding.
pub(crate) struct FrameMaker {
    pub(crate) base: Vec<u8>,
    pub(crate) target: usize,
}

impl FrameMaker {
    pub(crate) fn new(w: u16, h: u16, target: usize) -> FrameMaker {
        let mut px = vec![0u8; usize::from(w) * usize::from(h) * 3];
        testsrc::render(&mut px, w, h, 1);
        let base = testsrc::encode(&px, w, h).expect("encode base frame");
        FrameMaker { base, target }
    }

    pub(crate) fn make(&self, seq: u64) -> Vec<u8> {
        let text = format!("{seq},{}", now_us());
        let overhead = self.base.len() + 40 + text.len();
        let pad = self.target.saturating_sub(overhead);
        testjpeg::tagged(&self.base, text.as_bytes(), pad)
    }
}

/// Sends frames on absolute deadlines until `until`, keeping the last sequence number sent in
/// `sent`.
pub(crate) fn run_upstream(
    mode: UpMode,
    maker: FrameMaker,
    fps: f64,
    until: Instant,
    sent: Arc<AtomicU64>,
) {
    let mut sock = match &mode {
        UpMode::Push(addr) => {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match TcpStream::connect(addr) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => panic!("upstream connect {addr}: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        UpMode::Listen(addr) | UpMode::ServeHttp(addr) => {
            let l = TcpListener::bind(addr).expect("bind upstream listener");
            let (mut s, _) = l.accept().expect("accept the server's connection");
            if let UpMode::ServeHttp(_) = mode {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=spionisto\r\n\
                      Connection: close\r\n\r\n",
                );
            }
            s
        }
    };
    let _ = sock.set_nodelay(true);
    let interval = Duration::from_secs_f64(1.0 / fps);
    let start = Instant::now();
    // Sequence numbers start at the wall clock in µs, so they keep growing across runs against
    // the same relay (the soak): a client that first gets the previous run's last frame does
    // not count the new run's frames as reordered.
    let first = now_us();
    let mut n = 0u32;
    loop {
        let due = start + interval * n;
        if due >= until {
            break;
        }
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        let seq = first + u64::from(n);
        if sock.write_all(&gst_part(&maker.make(seq))).is_err() {
            break;
        }
        sent.store(seq, SeqCst);
        n += 1;
    }
}
