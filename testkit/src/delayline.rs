//! A link emulator for tests that need a round trip (this kernel has no `netem`): two TUN
//! devices, one in the test's own network namespace (`10.77.0.1`, where the relay listens)
//! and one in a namespace made here for the viewer (`10.77.0.2`), and threads that carry each
//! packet from one to the other after a delay, the viewer-bound direction at a rate and
//! through a router-like queue (packets that would wait longer than it holds are dropped).
//! Real TCP runs over it on both ends: slow start, ACK clocking, delayed ACKs, a window.
//!
//! Only inside a namespace of the test's own (see [`crate::reexec_in_netns`]): the devices
//! and addresses exist nowhere else, and the threads stop when the line is dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The relay's side of the line.
pub const SERVER: &str = "10.77.0.1";
/// The viewer's side, in the namespace the line makes.
pub const CLIENT: &str = "10.77.0.2";

/// What the line does to packets.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Each way: half the round trip.
    pub one_way: Duration,
    /// Viewer-bound bytes per second (`None`: as fast as the threads copy).
    pub rate: Option<f64>,
    /// The most a packet waits in the viewer-bound queue before it is dropped (a router's
    /// buffer, in time: 100 packets of 1500 bytes at 2 Mbit/s are 600 ms).
    pub queue: Duration,
}

pub struct DelayLine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The viewer's namespace, for [`DelayLine::connect`].
    client_ns: File,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// A TUN device named `name` in the calling thread's network namespace.
fn tun(name: &str) -> File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("/dev/net/tun");
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; 16],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one ifreq we own, on the fd we just opened.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, &mut req) };
    assert_eq!(
        rc,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    f
}

impl DelayLine {
    /// Makes the line. Call inside a namespace of the test's own, as root.
    pub fn start(shape: Shape) -> DelayLine {
        let server = tun("mjr-srv");
        // The test's own namespace starts with loopback down: its status requests to the
        // relay's address go over it.
        crate::sh("ip link set lo up");
        crate::sh(&format!("ip addr add {SERVER}/24 dev mjr-srv"));
        crate::sh("ip link set mjr-srv up");
        // The viewer's end: a thread moves to a new namespace, makes its device there, and
        // hands back the device and the namespace (threads keep their own).
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: unshare of this thread's network namespace only.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            let dev = tun("mjr-cli");
            // Commands started from this thread run in its namespace.
            crate::sh("ip link set lo up");
            crate::sh(&format!("ip addr add {CLIENT}/24 dev mjr-cli"));
            crate::sh("ip link set mjr-cli up");
            let ns = File::open("/proc/thread-self/ns/net").unwrap();
            tx.send((dev, ns)).unwrap();
        })
        .join()
        .unwrap();
        let (client, client_ns) = rx.recv().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let to_server = Shape {
            rate: None,
            ..shape
        };
        let threads = [
            carry(&server, &client, shape, &stop),
            carry(&client, &server, to_server, &stop),
        ]
        .into_iter()
        .flatten()
        .collect();
        DelayLine {
            stop,
            threads,
            client_ns,
        }
    }

    /// A TCP connection from the viewer's side to `to`, with receive buffer `rcvbuf`.
    pub fn connect(&self, to: SocketAddr, rcvbuf: Option<i32>) -> TcpStream {
        let ns = self.client_ns.try_clone().unwrap();
        std::thread::spawn(move || {
            // SAFETY: setns of this thread to a network namespace fd we hold.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            crate::try_connect(&to.to_string(), rcvbuf).expect("connect over the delay line")
        })
        .join()
        .unwrap()
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The two threads of one direction: a reader that stamps each packet with its release time
/// (after the queue ahead of it at `rate`, plus the delay) and a writer that releases it then.
fn carry(from: &File, to: &File, shape: Shape, stop: &Arc<AtomicBool>) -> [JoinHandle<()>; 2] {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    // At most a few thousand packets in flight: the queue's time bound drops the rest.
    let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(8192);
    let stop_r = stop.clone();
    let reader = std::thread::spawn(move || {
        let fd = from.as_raw_fd();
        let mut buf = vec![0u8; 65536];
        let mut free_at = Instant::now();
        while !stop_r.load(SeqCst) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd for a descriptor this thread holds.
            if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                continue;
            }
            let Ok(n) = from.read(&mut buf) else { continue };
            let now = Instant::now();
            let depart = match shape.rate {
                Some(rate) => {
                    let start = free_at.max(now);
                    if start.duration_since(now) > shape.queue {
                        continue; // the queue is full: dropped, as a router would
                    }
                    free_at = start + Duration::from_secs_f64(n as f64 / rate);
                    free_at
                }
                None => now,
            };
            if tx
                .try_send((depart + shape.one_way, buf[..n].to_vec()))
                .is_err()
            {
                continue;
            }
        }
    });
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || {
        while !stop_w.load(SeqCst) {
            let Ok((at, packet)) = rx.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let _ = to.write(&packet);
        }
    });
    [reader, writer]
}
