#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! The HTTP/1.x connection layer: accept, read one request head within a deadline, hand the
//! request to a thread, write one response, close.
//!
//! Why not tiny_http (the first version used it): a camera server must bound what clients
//! can make it hold, and tiny_http bounds neither its threads (its pool starts a thread for
//! every connection waiting for a request, with no cap) nor the time a request head may take (a
//! client sending one byte per second keeps a thread forever), and it hides its sockets, so
//! per-connection socket options (a Unix socket's send buffer) were out of reach. Its accept
//! thread also died on the listener's read timeout, and a pool wake-up race made some
//! connections in a burst wait seconds. Here:
//!
//! * one acceptor thread; a connection is *pending* until its request head is complete and
//!   *served* after; at most `max_clients` served (beyond that: `503` and close). Pending
//!   connections have their own budget, [`Limits::max_pending`] in all and
//!   [`PENDING_PER_ADDR`] per source address: a new connection over it closes the oldest
//!   *idle* pending one (nothing to read: no request sent, or stalled half way), of its own
//!   address first. A real client's request arrives within a round trip, so an idle flood
//!   closes only its own connections and cannot lock viewers out (it used to: 150 idle
//!   connections made `--max-clients 100` refuse every viewer for `--header-timeout`).
//!   Threads: at most `max_clients + max_pending` (beyond that, `503` at accept);
//! * a request head must be complete within `--header-timeout` ([`HEAD_TIMEOUT`](super::head::HEAD_TIMEOUT)) and
//!   [`MAX_HEAD`](super::head::MAX_HEAD) bytes, else
//!   `408` or `431` and close; a malformed one gets `400`;
//! * refusals and evictions are logged once and then summarised every 10 s
//!   ([`crate::logger::Throttled`]), never a line each;
//! * one request per connection (`Connection: close`): a streaming response never ends anyway,
//!   and a browser simply opens a new connection for the next request. Pipelined requests
//!   after the first are not read.
//!
//! Request heads are read by [`super::head`] and parsed by `httparse` (sans-IO, already in the
//! dependency tree through the HTTP client); requests and responses are [`super::conn`]'s:
//! a status line, a few headers and a body.

use super::conn::{linger_close, Conn, Request, Response};
use super::head::{read_head, HeadError};
use crate::shutdown::Shutdown;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a `503` to a client over the limit may take to write.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_millis(200);
/// Pending connections (request head not complete yet) from one source address. A browser
/// opens at most six connections to a host at once.
pub const PENDING_PER_ADDR: usize = 8;

/// Where connections come from.
pub enum Listener<'a> {
    Tcp(&'a TcpListener),
    Unix(&'a UnixListener),
}

impl Listener<'_> {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }

    fn accept(&self) -> io::Result<(Conn, String)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, a)| (Conn::Tcp(s), a.to_string())),
            Listener::Unix(l) => l.accept().map(|(s, _)| (Conn::Unix(s), "unix".to_string())),
        }
    }
}

/// Limits of the connection layer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections past their request head (being answered, streaming) at once.
    pub max_clients: usize,
    /// Connections still sending their request head, at once (see the module docs).
    pub max_pending: usize,
    pub client_stack: usize,
    /// Time allowed for a whole request head.
    pub head_timeout: Duration,
    /// `--send-timeout`, set on every connection: accepted Unix sockets do not inherit the
    /// listener's `SO_SNDTIMEO`, and a never-reading client must not block a write forever.
    pub send_timeout: Duration,
    /// Called on every accepted connection before its thread starts (socket options).
    pub on_accept: fn(&Conn),
    /// Connections past their head from one source address at once (`--max-clients-per-ip`),
    /// so one host that opens streams and never reads cannot take every slot. Unix-socket
    /// peers (a local proxy) are not counted per address.
    pub max_per_addr: usize,
    /// `--tls-cert`/`--tls-key`: every TCP connection speaks TLS (see the `tls` module).
    pub tls: Option<Arc<super::tls::Tls>>,
    /// Where refusals are counted, by reason; shared with `/status` and `/metrics`.
    pub refusals: Arc<Refusals>,
}

/// Connections turned away by the connection layer since start, by reason. The log says
/// each once and then summarises (a flood must not flood the log); these count every one,
/// so a monitoring system sees that 500 viewers behind one NAT address were refused.
#[derive(Debug, Default)]
pub struct Refusals {
    /// `503`: `--max-clients` connections were being served.
    pub max_clients: AtomicU64,
    /// `503`: `--max-clients-per-ip` connections from the same address were being served.
    pub max_clients_per_ip: AtomicU64,
    /// `503` at accept: the thread bound was reached and no pending connection was idle.
    pub pending: AtomicU64,
    /// Connections that had sent no whole request, closed to admit a newer one.
    pub evicted: AtomicU64,
}

impl Refusals {
    /// `(reason, count)` for each reason, in a fixed order (the names `/status` and
    /// `/metrics` use).
    pub fn counts(&self) -> [(&'static str, u64); 4] {
        [
            ("max_clients", self.max_clients.load(Relaxed)),
            ("max_clients_per_ip", self.max_clients_per_ip.load(Relaxed)),
            ("pending", self.pending.load(Relaxed)),
            ("evicted", self.evicted.load(Relaxed)),
        ]
    }
}

impl Limits {
    /// The pending budget that goes with `max_clients`: a quarter of it, 16 to 256.
    pub fn pending_for(max_clients: usize) -> usize {
        (max_clients / 4).clamp(16, 256)
    }
}

/// The pending connections, oldest first. At most `max_pending` entries; owned by [`run`],
/// entries removed by their thread's [`PendingGuard`] once the head is read (or the
/// connection ends).
#[derive(Default)]
struct Pending {
    next_id: std::sync::atomic::AtomicU64,
    list: parking_lot::Mutex<std::collections::VecDeque<Waiting>>,
}

/// One connection whose request head is not complete yet.
struct Waiting {
    id: u64,
    /// The source address; `None` for a Unix socket (every peer of a proxy's socket looks
    /// the same).
    addr: Option<std::net::IpAddr>,
    since: Instant,
    /// A second handle to close it by.
    conn: Conn,
}

impl Pending {
    /// Registers a new connection. If its address already has [`PENDING_PER_ADDR`] pending
    /// connections, or all addresses together `max`, or `full` (the thread bound is reached),
    /// the oldest *idle* pending one (of that address first) is closed. Idle: pending for
    /// [`IDLE_AFTER`] with nothing waiting to be read, i.e. it sent no request or stalled half
    /// way. A connection whose request is waiting for its thread is never closed, so a burst
    /// of real requests from one host (a dashboard, a NAT, a benchmark) is not hurt. Returns
    /// the new entry's id and whether it closed one, or `None` when `full` and nothing idle.
    fn admit(
        &self,
        addr: Option<std::net::IpAddr>,
        handle: Conn,
        max: usize,
        full: bool,
    ) -> Option<(u64, bool)> {
        let id = self.next_id.fetch_add(1, SeqCst);
        let mut list = self.list.lock();
        let now = Instant::now();
        let same = |a: &Option<std::net::IpAddr>| addr.is_some() && *a == addr;
        let idle =
            |w: &Waiting| now.duration_since(w.since) >= IDLE_AFTER && nothing_to_read(&w.conn);
        let mine = list.iter().filter(|w| same(&w.addr)).count();
        let mut victim = None;
        if mine >= PENDING_PER_ADDR || full {
            victim = list.iter().position(|w| same(&w.addr) && idle(w));
        }
        if victim.is_none() && (list.len() >= max || full) {
            victim = list.iter().position(idle);
        }
        let evicted = match victim.and_then(|i| list.remove(i)) {
            Some(old) => {
                old.conn.shutdown();
                true
            }
            // The pending list's bound holds: with nothing idle to close, the new one is
            // refused (its thread would be one more than `max_pending` allows).
            None if full || list.len() >= max => return None,
            None => false,
        };
        list.push_back(Waiting {
            id,
            addr,
            since: now,
            conn: handle,
        });
        Some((id, evicted))
    }

    fn remove(&self, id: u64) {
        self.list.lock().retain(|w| w.id != id);
    }
}

/// How long a pending connection with nothing to read must have waited before a newer one
/// may close it: more than a round trip on any network a viewer uses.
const IDLE_AFTER: Duration = Duration::from_millis(250);

/// Whether a connection has no bytes waiting to be read (`FIONREAD`).
fn nothing_to_read(conn: &Conn) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int for a socket we own.
    let rc = unsafe { libc::ioctl(conn.as_raw_fd(), libc::FIONREAD, &mut n) };
    rc == 0 && n == 0
}

/// Removes its connection from [`Pending`] when the head is read or the thread ends.
struct PendingGuard<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending.remove(self.id);
    }
}

/// Log lines of the connection layer that a flood could repeat.
static REFUSED_LOG: crate::logger::Throttled = crate::logger::Throttled::new();
static EVICTED_LOG: crate::logger::Throttled = crate::logger::Throttled::new();
static PER_ADDR_LOG: crate::logger::Throttled = crate::logger::Throttled::new();

/// Accepts until `shutdown` says stop; each connection gets its own thread running `handler`.
/// `active` counts the connection threads alive, for the caller to wait on at shutdown.
pub fn run(
    listener: Listener<'_>,
    limits: Limits,
    shutdown: &Shutdown,
    active: Arc<AtomicUsize>,
    handler: Arc<dyn Fn(Request) + Send + Sync>,
) {
    let mut last_error: Option<Instant> = None;
    let pending = Arc::new(Pending::default());
    // Connections past their head; never more than max_clients.
    let served = Arc::new(AtomicUsize::new(0));
    let by_addr = Arc::new(ServedByAddr::default());
    while !shutdown.is_stopping() {
        // Wait for a connection at most 100 ms, so shutdown is noticed.
        let mut pfd = libc::pollfd {
            fd: listener.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for a listening socket we own.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready <= 0 {
            continue;
        }
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // Out of file descriptors and the like: the backlog waits meanwhile. Logged at
                // most every 10 s, and a pause so a persistent error does not spin.
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    log::error!("accepting an HTTP connection failed: {e}; retrying");
                    last_error = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        (limits.on_accept)(&conn);
        let addr = match &conn {
            Conn::Tcp(s) => s.peer_addr().ok().map(|a| a.ip()),
            Conn::Tls(s) => s.sock.peer_addr().ok().map(|a| a.ip()),
            Conn::Unix(_) => None,
        };
        let Ok(handle) = conn.try_clone() else {
            continue; // out of descriptors: dropping the connection is all we can do
        };
        // A hard bound on threads: pending plus served. At the bound, a new connection gets
        // in only in place of an idle pending one.
        let full = active.load(SeqCst) >= limits.max_clients + limits.max_pending;
        let Some((id, evicted)) = pending.admit(addr, handle, limits.max_pending, full) else {
            limits.refusals.pending.fetch_add(1, Relaxed);
            refused(&peer, limits.max_clients);
            refuse(conn, "Too many clients; try again later.\n");
            continue;
        };
        active.fetch_add(1, SeqCst);
        if evicted {
            limits.refusals.evicted.fetch_add(1, Relaxed);
            EVICTED_LOG.note(|more| {
                log::warn!(
                    "closed the oldest unfinished connection to admit {peer}: too many \
                     connections that sent no request yet ({PENDING_PER_ADDR} per address, {} in \
                     all){}",
                    limits.max_pending,
                    crate::logger::more(more)
                )
            });
        }
        let guard = ActiveGuard(active.clone());
        let handler = handler.clone();
        let limits = limits.clone();
        let (pending2, served, by_addr) = (pending.clone(), served.clone(), by_addr.clone());
        let spawned = std::thread::Builder::new()
            .name("http-client".into())
            .stack_size(limits.client_stack)
            .spawn(move || {
                let _guard = guard;
                let admitted = Admitted {
                    pending: &pending2,
                    id,
                    served,
                    by_addr,
                    addr,
                };
                serve_connection(conn, peer, &limits, admitted, &*handler);
            });
        if let Err(e) = spawned {
            // The closure (and the guard and connection in it) is dropped with the error; the
            // pending entry holds a second handle of the connection, so it goes too, or the
            // descriptor would stay open (and the client wait) until evicted.
            pending.remove(id);
            log::error!("cannot start a client thread: {e}");
        }
    }
}

/// A connection's places in the books: its pending entry, and the served counts (in all, and
/// of its address) it joins once its head is read.
struct Admitted<'a> {
    pending: &'a Pending,
    id: u64,
    served: Arc<AtomicUsize>,
    by_addr: Arc<ServedByAddr>,
    addr: Option<std::net::IpAddr>,
}

/// Connections past their head, per source address. One entry per address with a served
/// connection (at most `max_clients` entries); owned by [`run`], each count taken and given
/// back by the connection's own [`AddrSlot`].
#[derive(Default)]
struct ServedByAddr(parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl ServedByAddr {
    /// Takes a slot for `addr`, unless it holds `max` already.
    fn take(self: &Arc<Self>, addr: std::net::IpAddr, max: usize) -> Option<AddrSlot> {
        let mut map = self.0.lock();
        let n = map.entry(addr).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddrSlot(self.clone(), addr))
    }
}

/// Gives its address's slot back when the connection ends.
struct AddrSlot(Arc<ServedByAddr>, std::net::IpAddr);

impl Drop for AddrSlot {
    fn drop(&mut self) {
        let mut map = (self.0).0.lock();
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

fn refused(peer: &str, max_clients: usize) {
    REFUSED_LOG.note(|more| {
        log::warn!(
            "refusing {peer}: {max_clients} clients already connected (--max-clients){}",
            crate::logger::more(more)
        )
    });
}

/// A `503` to a client over the limit, which must not keep us waiting.
fn refuse(mut conn: Conn, msg: &str) {
    let _ = conn.set_write_timeout(Some(REFUSE_WRITE_TIMEOUT));
    let resp = Response::bytes(503, msg)
        .with_header("Content-Type", "text/plain; charset=utf-8")
        .with_header("Retry-After", "1");
    let _ = resp.write_to(&mut conn, 1, false);
    conn.shutdown();
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

fn serve_connection(
    mut conn: Conn,
    peer: String,
    limits: &Limits,
    admitted: Admitted<'_>,
    handler: &dyn Fn(Request),
) {
    let _ = conn.set_write_timeout(Some(limits.send_timeout));
    let head = {
        let _pending = PendingGuard {
            pending: admitted.pending,
            id: admitted.id,
        };
        // The TLS handshake is part of the head: both within --header-timeout.
        let deadline = Instant::now() + limits.head_timeout;
        if let Some(tls) = &limits.tls {
            conn = match conn {
                Conn::Tcp(tcp) => match super::tls::accept(tcp, tls, deadline, &peer) {
                    Some(c) => c,
                    None => return,
                },
                other => other,
            };
        }
        read_head(
            &mut conn,
            deadline.saturating_duration_since(Instant::now()),
        )
    };
    match head {
        Ok(head) => {
            let served = admitted.served;
            if served.fetch_add(1, SeqCst) >= limits.max_clients {
                served.fetch_sub(1, SeqCst);
                limits.refusals.max_clients.fetch_add(1, Relaxed);
                refused(&peer, limits.max_clients);
                refuse(conn, "Too many clients; try again later.\n");
                return;
            }
            let _served = ActiveGuard(served);
            let _addr_slot = match admitted.addr {
                Some(addr) => match admitted.by_addr.take(addr, limits.max_per_addr) {
                    Some(slot) => Some(slot),
                    None => {
                        limits.refusals.max_clients_per_ip.fetch_add(1, Relaxed);
                        PER_ADDR_LOG.note(|more| {
                            log::warn!(
                                "refusing {peer}: {} connections from {addr} already \
                                 (--max-clients-per-ip){}",
                                limits.max_per_addr,
                                crate::logger::more(more)
                            )
                        });
                        refuse(
                            conn,
                            "Too many connections from your address; close some viewers and \
                             try again.\n",
                        );
                        return;
                    }
                },
                None => None,
            };
            handler(Request {
                method: head.method,
                target: head.target,
                minor_version: head.minor_version,
                headers: head.headers,
                peer,
                ip: admitted.addr,
                conn,
            })
        }
        Err(HeadError::Closed) => log::debug!("{peer}: closed before sending a request"),
        Err(e) => {
            let (status, msg) = match e {
                HeadError::Timeout => (408, "Request head not complete in time."),
                HeadError::TooLarge => (431, "Request head too large."),
                _ => (400, "Malformed request."),
            };
            log::debug!("{peer}: {msg} ({status})");
            let resp = Response::bytes(status, format!("{msg}\n"))
                .with_header("Content-Type", "text/plain; charset=utf-8");
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = resp.write_to(&mut conn, 1, false);
            linger_close(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// `run` on a loopback listener with `limits`, every request answered `200`; the address,
    /// and the trigger that stops it.
    fn serve_with(limits: Limits) -> (String, crate::shutdown::Trigger) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (trigger, stop) = crate::shutdown::channel();
        std::thread::spawn(move || {
            let handler: Arc<dyn Fn(Request) + Send + Sync> = Arc::new(|rq: Request| {
                let _ = rq.respond(Response::bytes(200, "ok"));
            });
            run(
                Listener::Tcp(&l),
                limits,
                &stop,
                Arc::new(AtomicUsize::new(0)),
                handler,
            );
        });
        (addr, trigger)
    }

    fn limits(max_clients: usize, max_pending: usize, stack: usize) -> Limits {
        Limits {
            max_clients,
            max_pending,
            client_stack: stack,
            head_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            on_accept: |_| {},
            max_per_addr: max_clients,
            tls: None,
            refusals: Arc::default(),
        }
    }

    /// Issue 20 item 9: a connection whose thread cannot start is closed, not kept open by
    /// its pending entry (a descriptor leak, and a client left waiting).
    #[test]
    fn a_failed_thread_spawn_closes_its_connection() {
        // A stack no machine can map: every spawn fails. (Half the address space was
        // mappable as a 32-bit program, whose 4 GiB had 2 GiB free in one piece.)
        let (addr, trigger) = serve_with(limits(10, 16, usize::MAX / 4 * 3));
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 16];
        let r = c.read(&mut b);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
            "connection still open after a failed spawn: {r:?}"
        );
        trigger.pull();
    }

    /// Issue 20 item 9: the pending budget is a bound: with `max_pending` connections whose
    /// requests are not idle (they sent part of a head just now), one more is refused with
    /// `503` instead of getting a thread beyond the budget.
    #[test]
    fn the_pending_budget_is_enforced() {
        let (addr, trigger) = serve_with(limits(100, 4, 64 * 1024));
        let busy: Vec<std::net::TcpStream> = (0..4)
            .map(|_| {
                let mut c = std::net::TcpStream::connect(&addr).unwrap();
                c.write_all(b"GET / HTTP/1.1\r\n").unwrap();
                c
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let mut extra = std::net::TcpStream::connect(&addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut got = Vec::new();
        let _ = extra.read_to_end(&mut got);
        assert!(
            got.starts_with(b"HTTP/1.1 503"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        drop(busy);
        trigger.pull();
    }
}
