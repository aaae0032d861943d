//! A paced upstream: connects to a `tcp-listen:` source (or is listened to) and writes
//! numbered frames at a rate, on a thread of its own.

use crate::*;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A paced upstream pushing frames `1..=count` into a `tcp-listen` source at `fps`.
pub struct Upstream {
    /// Sequence number of the newest frame written completely.
    pub sent: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
    pub handle: Option<JoinHandle<u64>>,
}

impl Upstream {
    pub fn start(addr: &str, fps: f64, count: u64, base: usize) -> Upstream {
        Upstream::start_from(addr, fps, 1, count, base)
    }

    pub fn start_from(addr: &str, fps: f64, first: u64, count: u64, base: usize) -> Upstream {
        let mut sock = TcpStream::connect(addr).expect("connect to the relay's upstream port");
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (sent2, stop2) = (sent.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let interval = Duration::from_secs_f64(1.0 / fps);
            for (i, seq) in (first..first + count).enumerate() {
                if stop2.load(SeqCst) {
                    break;
                }
                let due = start + interval * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if sock.write_all(&gst_part(&frame(seq, base))).is_err() {
                    break;
                }
                sent2.store(seq, SeqCst);
            }
            sent2.load(SeqCst)
        });
        Upstream {
            sent,
            stop,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> u64 {
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
