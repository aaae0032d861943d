//! The second bound on what queues for a TCP client: bytes *in flight*, not only unsent ones.
//!
//! `TCP_NOTSENT_LOWAT` (see the parent module) keeps the kernel from holding more than ~16 KiB
//! that it has not sent yet. Bytes that it has sent but that the client has not acknowledged
//! are a queue too: they sit in the congestion window and, on a real slow link (Wi-Fi, 4G, a
//! VPN), in the bottleneck router's buffer. A congestion control that fills queues (cubic,
//! the default on most distributions) with a deep router buffer keeps seconds of old frames
//! there. Measured on a shaped 2 Mbit/s link with a 100-packet queue: 549 ms median lag
//! with the unsent bound alone, against about 100 ms that the link allows (80 ms to carry a
//! 20 KB frame plus up to one frame interval of waiting for it).
//!
//! So before a client thread chooses its next frame it waits, here, until the bytes in flight
//! to that client (`ioctl(SIOCOUTQ)`: unsent plus unacknowledged) are within an allowance, and
//! only then takes the newest frame. The frame it takes is then as new as it can be when the
//! link is ready for it, instead of being chosen early and waiting in a queue.
//!
//! The allowance must not cost throughput, so it is the larger of
//!
//! * two segments (`2 × tcpi_snd_mss`): on loopback that is 128 KiB and nothing ever waits, on
//!   an Ethernet-sized path ~2.9 KB, enough to keep the link busy while the next frame starts;
//! * one bandwidth-delay product, `tcpi_delivery_rate × tcpi_min_rtt`: the bytes a path with a
//!   long round trip needs in flight to stay full. A 5 Mbit/s path with a 100 ms RTT keeps
//!   62 KB in flight and its frame rate; a 2 Mbit/s one with 50 ms, 12.5 KB.
//!
//! A young connection gets twice that bandwidth-delay product for its first [`YOUNG`]
//! (BBR's startup does the same for the same reason). The delivery rate is measured on what
//! the bound lets through, so with one BDP the allowance could only grow by about a frame per
//! round trip: on a 10 Mbit/s path with a 150 ms round trip a new viewer took 2.7 s to reach
//! the 480 KB/s a 640x480 camera needs, and `?size=auto` took the climb for a slow link
//! (docs/sizes.md). With two, the rate can double each round trip as TCP's own slow start
//! does, and on a link that really is the limit the extra BDP shows as a queue (the round trip
//! above its least), which is the evidence `?size=auto` needs to trust the rate it measured.
//! Only the measured rate is doubled, not the 1 Mbit/s assumed before there is one (on a
//! 0.3 Mbit/s link that would be a second of queue). It costs at most one round trip of
//! extra lag for those seconds, and only where the round trip is long: elsewhere the two
//! segments are the larger term.
//!
//! The check costs one `ioctl` at most per frame, and none while the last reading plus what
//! was written since is within the allowance (the queue cannot be larger): on loopback, with
//! 20 KB frames, one frame in six or so; `TCP_INFO` is read only when the queue is over the
//! allowance (it refreshes the estimate), and at every frame of a young connection. Waiting
//! is not a busy poll: the thread sleeps for the time the link needs to drain the excess at
//! its measured delivery rate (at least 1 ms, at most [`MAX_NAP`] before it looks again),
//! and a new frame or shutdown wakes it. A client whose queue does not drain within
//! `--send-timeout` is dropped, as a stalled write would be.
//!
//! Unix-socket clients (a reverse proxy on the same host) have no such queue behind them; they
//! keep the small send buffer the parent module gives them. What such a proxy has not read yet
//! ([`unread`]) is still what `?size=auto` measures there: the proxy reads only as fast as its
//! viewer's link takes the bytes on.

use crate::slot::{FrameSlot, Next};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Longest single sleep before the queue is looked at again.
const MAX_NAP: Duration = Duration::from_millis(50);
/// Delivery rate assumed before the kernel has measured one (bytes/s): 1 Mbit/s.
const RATE_FLOOR: u64 = 125_000;
/// Longest round trip believed for the allowance: a 2 s "minimum RTT" is a measurement error,
/// and a huge allowance would switch the bound off.
const MAX_MIN_RTT_US: u64 = 1_000_000;

/// How long a new connection is young: its allowance is [`YOUNG_GAIN`] BDPs. Longer than
/// `?size=auto`'s opening (at most 2 s), so its first looks see a link that is the limit as
/// one (a queue), not as a rate that two looks happen to agree on.
pub const YOUNG: Duration = Duration::from_secs(3);
/// Bandwidth-delay products a young connection may have in flight.
const YOUNG_GAIN: u64 = 2;
/// Set `MJPEG_RELAY_INFLIGHT_YOUNG_GAIN=1` to give young connections one BDP like the rest:
/// the control of the test that the gain opens a long round trip's path in time. Not a
/// documented flag.
pub const YOUNG_GAIN_ENV: &str = "MJPEG_RELAY_INFLIGHT_YOUNG_GAIN";

/// Set the environment variable `MJPEG_RELAY_NO_INFLIGHT_BOUND=1` to switch the bound off.
/// For the benchmark and the control test only, so both measure with and without it in one
/// run; not a documented flag.
pub const DISABLE_ENV: &str = "MJPEG_RELAY_NO_INFLIGHT_BOUND";

/// Whether the bound is on for this process.
pub fn enabled() -> bool {
    std::env::var_os(DISABLE_ENV).is_none_or(|v| v.is_empty() || v == "0")
}

/// The bound for one TCP client connection. Owned by the client's thread.
#[derive(Debug)]
pub struct InFlight {
    fd: RawFd,
    /// Bytes allowed in flight before the next frame is chosen; refreshed from `TCP_INFO`.
    allowance: u64,
    /// The latest delivery rate estimate, bytes/s.
    rate: u64,
    /// The allowance's floor: two segments, or the bytes [`RATE_FLOOR`] keeps in flight over
    /// the least round trip (an assumption, which a young connection's gain does not double).
    floor: u64,
    /// One bandwidth-delay product at the last reading, from the measured delivery rate (0
    /// before there is one).
    bdp: u64,
    /// Until then the allowance is [`YOUNG_GAIN`] BDPs; `None` once the connection is grown.
    young_until: Option<Instant>,
    /// An upper bound of the bytes queued now: the last reading plus what was written since
    /// (the queue only shrinks otherwise). While it is within the allowance the queue is too,
    /// and the `ioctl` is skipped: on loopback and a LAN, most frames need none.
    at_most: u64,
}

/// What the kernel knows of a connection's path (`TCP_INFO`), for telling a link that is the
/// limit from a connection that is still opening its window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkSample {
    /// Smoothed round trip now, and the least seen: above the least, a queue has formed
    /// somewhere on the path.
    pub rtt: Duration,
    pub min_rtt: Duration,
    /// Time so far the receiver's window held the sender back (a reader slower than the
    /// link), cumulative.
    pub rwnd_limited: Duration,
    /// Segments resent so far: a bottleneck without a queue drops instead.
    pub retrans: u32,
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// The queue is within the allowance: choose the next frame now. `waited`: it was not at
    /// first, so a newer frame may have arrived meanwhile.
    Ready { waited: bool },
    /// The server is shutting down.
    Closed,
    /// The queue did not drain by the deadline: the client is stalled.
    Stalled,
    /// The connection is dead (the peer reset or closed it): a closed tab on a slow link.
    /// Its unacknowledged bytes stay in the queue count after a reset, so without this check
    /// the client would wait out `--send-timeout` as a ghost in `/status`.
    Gone,
}

impl InFlight {
    /// For a TCP socket; `None` when the socket tells nothing (not TCP).
    pub fn new(fd: RawFd) -> Option<InFlight> {
        let info = tcp_info(fd)?;
        let mut b = InFlight {
            fd,
            allowance: 0,
            rate: RATE_FLOOR,
            floor: 0,
            bdp: 0,
            young_until: (young_gain() > 1).then(|| Instant::now() + YOUNG),
            at_most: u64::MAX,
        };
        b.update(&info);
        Some(b)
    }

    fn update(&mut self, info: &libc::tcp_info) {
        let min_rtt_us = u64::from(info.tcpi_min_rtt).min(MAX_MIN_RTT_US);
        let in_flight = |rate: u64| rate.saturating_mul(min_rtt_us) / 1_000_000;
        if info.tcpi_delivery_rate > 0 {
            self.rate = info.tcpi_delivery_rate.max(RATE_FLOOR);
            self.bdp = in_flight(info.tcpi_delivery_rate);
        }
        self.floor = (2 * u64::from(info.tcpi_snd_mss.max(536))).max(in_flight(RATE_FLOOR));
        self.set_allowance();
    }

    fn set_allowance(&mut self) {
        let gain = if self.young_until.is_some() {
            YOUNG_GAIN
        } else {
            1
        };
        self.allowance = self.floor.max(self.bdp.saturating_mul(gain));
    }

    /// The connection is no longer young at `now`: one BDP from here on.
    fn grow_up(&mut self, now: Instant) {
        if self.young_until.is_some_and(|t| now >= t) {
            self.young_until = None;
            self.set_allowance();
        }
    }

    /// The connection's round trip now (the kernel's smoothed estimate), for `?size=auto`.
    pub fn rtt(&self) -> Option<Duration> {
        tcp_info(self.fd).map(|i| Duration::from_micros(u64::from(i.tcpi_rtt)))
    }

    /// What the kernel knows of the path now, for `?size=auto` ([`LinkSample`]).
    pub fn sample(&self) -> Option<LinkSample> {
        tcp_info(self.fd).map(|i| LinkSample {
            rtt: Duration::from_micros(u64::from(i.tcpi_rtt)),
            min_rtt: Duration::from_micros(u64::from(i.tcpi_min_rtt)),
            rwnd_limited: Duration::from_micros(i.tcpi_rwnd_limited),
            retrans: i.tcpi_total_retrans,
        })
    }

    /// Bytes written but not yet acknowledged now (`SIOCOUTQ`), for `?size=auto`.
    pub fn queued(&self) -> Option<u64> {
        outq(self.fd)
    }

    /// The bytes allowed in flight now (for tests and logs).
    pub fn allowance(&self) -> u64 {
        self.allowance
    }

    /// `n` more bytes were written to the socket.
    pub fn wrote(&mut self, n: usize) {
        self.at_most = self.at_most.saturating_add(n as u64);
    }

    /// Waits until the bytes in flight are within the allowance. Sleeps on `slot` so that
    /// shutdown (and a new frame, after which it looks again) wakes it.
    pub fn wait<T>(&mut self, slot: &FrameSlot<T>, deadline: Instant) -> Drained {
        if self.young_until.is_some() {
            // Read at every frame while young: the handshake's round trip, which the first
            // estimate has for its least, may include a queue others left on the path (a
            // 425 ms one on a 150 ms path made a 106 KB allowance), and nothing else
            // corrects an allowance the queue stays under.
            self.grow_up(Instant::now());
            if let Some(info) = tcp_info(self.fd) {
                self.update(&info);
            }
        }
        if self.at_most <= self.allowance {
            return Drained::Ready { waited: false };
        }
        let mut waited = false;
        loop {
            if waited && peer_gone(self.fd) {
                return Drained::Gone;
            }
            let Some(queued) = outq(self.fd) else {
                // The socket tells nothing: never hold a client back.
                return Drained::Ready { waited };
            };
            self.at_most = queued;
            if queued <= self.allowance {
                return Drained::Ready { waited };
            }
            if let Some(info) = tcp_info(self.fd) {
                self.update(&info);
                if queued <= self.allowance {
                    return Drained::Ready { waited };
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Drained::Stalled;
            }
            let excess = queued - self.allowance;
            let drain = Duration::from_micros(excess.saturating_mul(1_000_000) / self.rate);
            let nap = drain
                .clamp(Duration::from_millis(1), MAX_NAP)
                .min(deadline - now);
            let generation = slot.latest().map_or(0, |(_, g)| g);
            if let Next::Closed = slot.wait_newer(generation, nap) {
                return Drained::Closed;
            }
            waited = true;
        }
    }
}

/// [`YOUNG_GAIN`], or what [`YOUNG_GAIN_ENV`] says (read once per process).
fn young_gain() -> u64 {
    static GAIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *GAIN.get_or_init(|| {
        std::env::var(YOUNG_GAIN_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(YOUNG_GAIN, |g: u64| g.clamp(1, YOUNG_GAIN))
    })
}

/// Whether the peer of a streaming connection is gone: reset (`POLLERR`/`POLLHUP`), or it
/// closed its side (`POLLRDHUP`; a viewer of a never-ending response sends nothing after its
/// request, so its end of input means it left). One `poll` with no wait.
pub fn peer_gone(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a socket the caller owns; timeout 0 never blocks.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Bytes written to a Unix socket that its peer (a reverse proxy) has not read yet, for
/// `?size=auto` behind a proxy ([`super::adapt`]).
pub fn unread(fd: RawFd) -> Option<u64> {
    outq(fd)
}

/// Bytes in the socket's send queue: not yet sent plus sent but not acknowledged (on a Unix
/// socket: not yet read by the peer).
fn outq(fd: RawFd) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ on Linux) writes one c_int for a socket we own.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    (rc == 0).then(|| u64::try_from(n).unwrap_or(0))
}

fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    // SAFETY: an all-zero tcp_info is a valid value (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`; older kernels write fewer and
    // leave the rest zero (then the allowance is two segments).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn loopback_never_waits_for_a_reading_client_and_a_stalled_one_is_reported() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        let mut b = InFlight::new(server.as_raw_fd()).expect("TCP");
        // Loopback's segment is 64 KiB: two of them allowed without waiting.
        assert!(b.allowance() >= 64 * 1024, "{}", b.allowance());
        let slot = FrameSlot::<u8>::new();
        let frame = vec![7u8; 50_000];
        server.write_all(&frame).unwrap();
        let mut got = vec![0u8; frame.len()];
        client.read_exact(&mut got).unwrap();
        let t = Instant::now();
        assert_eq!(
            b.wait(&slot, Instant::now() + Duration::from_secs(1)),
            Drained::Ready { waited: false }
        );
        assert!(t.elapsed() < Duration::from_millis(50));
        // A client that reads nothing: the queue stays full and the wait gives up in time.
        server.set_nonblocking(true).unwrap();
        let chunk = vec![1u8; 64 * 1024];
        while let Ok(n) = server.write(&chunk) {
            b.wrote(n); // the contract: every byte written is reported
        }
        let t = Instant::now();
        let r = b.wait(&slot, Instant::now() + Duration::from_millis(200));
        assert_eq!(r, Drained::Stalled);
        assert!(t.elapsed() >= Duration::from_millis(190));
        slot.close();
        assert_eq!(
            b.wait(&slot, Instant::now() + Duration::from_secs(5)),
            Drained::Closed
        );
    }

    /// A young connection may have two bandwidth-delay products in flight, a grown one one;
    /// two segments always (where the round trip is short, they are the larger term).
    #[test]
    fn a_young_connection_gets_twice_the_bandwidth_delay_product_until_it_grows_up() {
        // SAFETY: an all-zero tcp_info is a valid value (plain integers).
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        info.tcpi_snd_mss = 1448;
        info.tcpi_delivery_rate = 500_000; // 4 Mbit/s ...
        info.tcpi_min_rtt = 150_000; // ... 150 ms: 75 KB in flight
        let t0 = Instant::now();
        let mut b = InFlight {
            fd: -1,
            allowance: 0,
            rate: RATE_FLOOR,
            floor: 0,
            bdp: 0,
            young_until: Some(t0 + YOUNG),
            at_most: 0,
        };
        b.update(&info);
        assert_eq!(b.allowance(), 150_000);
        b.grow_up(t0 + YOUNG / 2);
        assert_eq!(b.allowance(), 150_000, "still young");
        b.grow_up(t0 + YOUNG);
        assert_eq!(b.allowance(), 75_000);
        b.update(&info);
        assert_eq!(b.allowance(), 75_000, "grown up for good");
        info.tcpi_min_rtt = 1_000; // 1 ms: 500 bytes, less than two segments
        b.update(&info);
        assert_eq!(b.allowance(), 2896);
        // A link slower than the rate assumed before one is measured (1 Mbit/s): the
        // assumption's in-flight bytes are the floor, and the gain doubles only what was
        // measured (0.3 Mbit/s, 160 ms: 12 KB young, under the floor's 20 KB).
        b.young_until = Some(t0 + YOUNG);
        info.tcpi_delivery_rate = 37_500;
        info.tcpi_min_rtt = 160_000;
        b.update(&info);
        assert_eq!(b.allowance(), 20_000);
    }

    /// A full queue for a connected pair: the client reads nothing until told.
    fn full_queue() -> (TcpStream, TcpStream, InFlight) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        let mut b = InFlight::new(server.as_raw_fd()).expect("TCP");
        server.set_nonblocking(true).unwrap();
        let chunk = vec![1u8; 64 * 1024];
        while let Ok(n) = server.write(&chunk) {
            b.wrote(n);
        }
        (client, server, b)
    }

    #[test]
    fn a_queue_that_drains_releases_the_wait() {
        let (mut client, _server, mut b) = full_queue();
        let slot = FrameSlot::<u8>::new();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let mut buf = vec![0u8; 1 << 20];
            let t = Instant::now();
            // Read everything there is (until nothing comes for 200 ms).
            client
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while t.elapsed() < Duration::from_secs(5) {
                if client.read(&mut buf).is_err() {
                    break;
                }
            }
            client
        });
        let t = Instant::now();
        let r = b.wait(&slot, Instant::now() + Duration::from_secs(5));
        assert_eq!(r, Drained::Ready { waited: true });
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        drop(reader.join());
    }

    #[test]
    fn a_peer_that_resets_ends_the_wait_at_once() {
        let (client, _server, mut b) = full_queue();
        let slot = FrameSlot::<u8>::new();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt with a valid linger struct on the client's socket.
            unsafe {
                libc::setsockopt(
                    client.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(client); // with unread data and linger 0: a reset
        });
        let t = Instant::now();
        let r = b.wait(&slot, Instant::now() + Duration::from_secs(5));
        assert_eq!(r, Drained::Gone);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        closer.join().unwrap();
    }

    /// The estimate (last reading plus bytes written since) is an upper bound: within the
    /// allowance the wait answers without looking, and a queue over it is always seen.
    #[test]
    fn the_estimate_never_hides_a_full_queue() {
        let (_client, mut server, mut b) = full_queue();
        let slot = FrameSlot::<u8>::new();
        // Full: seen, whatever the estimate says (it starts unknown, so it looks).
        assert_eq!(
            b.wait(&slot, Instant::now() + Duration::from_millis(100)),
            Drained::Stalled
        );
        // A reading of a drained queue, then small writes: no need to look until their sum
        // passes the allowance.
        b.at_most = 0;
        b.wrote(1000);
        assert_eq!(
            b.wait(&slot, Instant::now() + Duration::from_millis(100)),
            Drained::Ready { waited: false }
        );
        b.wrote(b.allowance() as usize);
        let _ = server.write(&[0u8; 10]);
        assert_eq!(
            b.wait(&slot, Instant::now() + Duration::from_millis(100)),
            Drained::Stalled,
            "over the allowance by the estimate: the queue is read, and it is full"
        );
    }
}
