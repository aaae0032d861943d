//! The HTTP side: one blocking thread per connection, the newest frame for every stream client.
//!
//! The connection layer ([`server`]) accepts, reads one request head within a deadline and
//! hands it to a thread; this file starts it and hands each request to `access`, then to
//! `routes`. We build the listener ourselves (`listener`) and set, once, socket options
//! that every accepted socket inherits on Linux:
//!
//! * `TCP_NOTSENT_LOWAT` (16 KiB): the kernel's send buffer is a queue too. By default a client
//!   that stops reading lets several megabytes (70 frames of 50 KB, measured) pile up before a
//!   write blocks, and those are old frames it will still have to show. With the low-water mark
//!   a write blocks once ~16 KiB are unsent, so the frame we pick next is the newest one.
//! * `SO_SNDTIMEO` (`--send-timeout`): a write that makes no progress for that long fails, and
//!   [`write_all_by`] also gives each frame that long in total, so one stuck client ends its own
//!   thread and never holds anything another client needs.
//! * `TCP_NODELAY`: the boundary written after a frame must leave now, not wait for an ACK.
//!
//! * the in-flight bound ([`inflight`]): bytes sent but not yet acknowledged are a queue too,
//!   on a real slow link the longest one; each client waits for its link to drain to about one
//!   bandwidth-delay product before choosing its next frame.
//!
//! A Unix socket has no low-water mark and its accepted sockets do not inherit a send buffer
//! size, so each accepted one gets [`UNIX_SNDBUF`] set directly.
//!
//! Streams go out as `multipart/x-mixed-replace` in one of two part layouts, see [`Layout`].
//!
//! One file per concern: [`server`] is the connection layer, [`conn`] a connection with its
//! request and response, [`head`] reads a request head; `listener` binds; `access` admits or
//! refuses; `routes` maps URLs (ours and those other servers use) to endpoints; `viewer` is
//! the one loop of every long-lived frame response, driven by `endpoints` (`/stream`,
//! `/snapshot`) and `mux` (`/mux`); `sizing` decides which size a track reads and why (one
//! key, `Size`), with `adapt`, `?size=auto`'s link measurement; `wire` what every frame
//! response shares (part layouts, the never-ending head, bounded writes); `query`
//! decodes query parameters; `clip` writes `/clip` from the history, `date` the times it and
//! the snapshots carry; `shrink` makes the one-off smaller pictures of both, a few at a time; [`inflight`] is the in-flight bound; `pages` makes `/status`,
//! `/state`, `/metrics` and the HTML pages; `respond` is how every response leaves; [`tls`]
//! is HTTPS. (`tests/docs.rs` keeps this list, and `lib.rs`'s table, complete.)

mod access;
mod adapt;
mod clip;
pub mod conn;
mod date;
mod endpoints;
pub mod head;
pub mod inflight;
mod listener;
mod mux;
mod pages;
mod query;
mod respond;
mod routes;
pub mod server;
mod shrink;
mod sizing;
pub mod tls;
mod viewer;
mod wire;

pub use access::host_allowed;
pub use endpoints::SNAPSHOT_WAIT;
pub use listener::{bind, HttpListener, NOTSENT_LOWAT, UNIX_SNDBUF};
pub use query::query_param;
use respond::send;
pub(crate) use respond::{html, text};
pub use wire::{write_all_by, Layout, REPEAT_AFTER};

use crate::hub::{Stream, Streams};
use crate::policy::{Current, Identity};
use crate::shutdown::Shutdown;
use conn::Request;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stack for request threads. They format a few headers and loop over `write`; 128 KiB is
/// plenty and keeps 2,000 threads within a 32-bit address space.
pub const CLIENT_STACK: usize = 128 * 1024;

/// Settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub send_timeout: Duration,
    pub max_clients: usize,
    /// `--max-clients-per-ip`: connections from one address at once.
    pub max_clients_per_ip: usize,
    /// Who may see what (`--auth`, `--token`, `--config`'s users and signing keys); swapped
    /// whole on SIGHUP.
    pub policy: Arc<Current>,
    /// `--allow-origin`: sent as `Access-Control-Allow-Origin` on every response.
    pub allow_origin: Option<String>,
    /// `--static DIR`, canonical: served at `/`, the viewer moves to `/viewer`.
    pub static_dir: Option<PathBuf>,
    /// `--header-timeout`: time allowed for a whole request head.
    pub header_timeout: Duration,
    /// `--allow-host NAME`: host names (besides IP literals and `localhost`) accepted in
    /// `Host` when there is no authentication; see [`host_allowed`].
    pub allow_hosts: Vec<String>,
    /// Bound the bytes in flight to each TCP client ([`inflight`]); on unless the benchmark
    /// switches it off.
    pub inflight_bound: bool,
    /// `--status-details`: show source specs and viewer addresses in `/status` without a login.
    pub status_details: bool,
    /// `--tls-cert`/`--tls-key`: HTTPS on the TCP listener.
    pub tls: Option<Arc<tls::Tls>>,
    /// The largest picture a smaller size may decode (pixels): `--max-pixels`.
    pub tier_max_pixels: usize,
}

/// Everything a request thread needs.
struct Shared {
    /// Served on a Unix socket (behind a proxy, which routes by its own server names).
    unix: bool,
    /// The streams now (SIGHUP may change the list).
    streams: Arc<Streams>,
    /// Streams are served under `/NAME/` (from `--stream`), not at the plain paths.
    named: bool,
    cfg: HttpConfig,
    started: Instant,
    /// Connections the connection layer turned away, by reason (`/status`, `/metrics`).
    refusals: Arc<server::Refusals>,
    /// `/clip` responses being written now, at most [`clip::MAX_CLIPS`].
    clips: AtomicUsize,
    /// Places for one-off smaller pictures (sized snapshots and clips), [`shrink::AT_ONCE`].
    one_offs: shrink::OneOffs,
    /// Failed logins per address ([`crate::login_limit`]): bounded to its own
    /// `MAX_ADDRESSES`.
    logins: parking_lot::Mutex<crate::login_limit::Limiter>,
    /// Stream connections open per user or signed link that has `max_viewers`; an entry lives
    /// while its count is above zero, so at most one per open connection.
    seats: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
}

/// One of the viewers a user or link may have at once; given back when dropped.
pub(super) struct Seat<'a> {
    shared: &'a Shared,
    key: Option<String>,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            let mut seats = self.shared.seats.lock();
            if let Some(n) = seats.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    seats.remove(&k);
                }
            }
        }
    }
}

impl Shared {
    /// The stream named `name`, or the 404 that says so (`?src=`, `?streams=`).
    fn stream(&self, name: &str) -> Result<Arc<Stream>, conn::Response> {
        self.streams
            .get()
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .ok_or_else(|| text(404, &format!("No stream named '{name}'.\n")))
    }

    /// The streams now.
    fn streams(&self) -> Arc<Vec<Arc<Stream>>> {
        self.streams.get()
    }

    /// The streams `id` may see in a list (`/`, `/status`, `/metrics`, `/mux?streams=*`).
    fn visible(&self, id: &Identity) -> Vec<Arc<Stream>> {
        self.streams()
            .iter()
            .filter(|s| id.may_list(&s.name))
            .cloned()
            .collect()
    }

    /// A viewer's seat for `id`: `None` when it has all the viewers it may have.
    fn seat(&self, id: &Identity) -> Option<Seat<'_>> {
        let Some((key, max)) = id.viewer_bound() else {
            return Some(Seat {
                shared: self,
                key: None,
            });
        };
        let mut seats = self.seats.lock();
        let n = seats.entry(key.clone()).or_insert(0);
        if *n >= max {
            if *n == 0 {
                seats.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Seat {
            shared: self,
            key: Some(key),
        })
    }
}

/// Serves HTTP on `listener` until `shutdown` says stop, then wakes every client (by closing
/// the feeds they sleep on) and returns once they have ended, or after a short grace period
/// (the caller exits the process either way).
pub fn serve(
    listener: HttpListener,
    streams: Arc<Streams>,
    named: bool,
    cfg: HttpConfig,
    shutdown: &Shutdown,
) {
    let limits = server::Limits {
        max_clients: cfg.max_clients,
        max_pending: server::Limits::pending_for(cfg.max_clients),
        send_timeout: cfg.send_timeout,
        client_stack: CLIENT_STACK,
        head_timeout: cfg.header_timeout,
        on_accept: listener::on_accept,
        max_per_addr: cfg.max_clients_per_ip,
        tls: cfg.tls.clone(),
        refusals: Arc::default(),
    };
    let shared = Arc::new(Shared {
        refusals: limits.refusals.clone(),
        clips: AtomicUsize::new(0),
        one_offs: shrink::OneOffs::default(),
        logins: Default::default(),
        seats: Default::default(),
        unix: matches!(listener, HttpListener::Unix(..)),
        streams,
        named,
        cfg,
        started: Instant::now(),
    });
    // Connection threads alive now; bounded by the connection layer (server.rs).
    let active = Arc::new(AtomicUsize::new(0));
    let handler_shared = shared.clone();
    let handler: Arc<dyn Fn(Request) + Send + Sync> =
        Arc::new(move |rq| handle(rq, &handler_shared));
    let l = match &listener {
        HttpListener::Tcp(l) => server::Listener::Tcp(l),
        HttpListener::Unix(l, _, _) => server::Listener::Unix(l),
    };
    server::run(l, limits, shutdown, active.clone(), handler);
    for s in shared.streams().iter() {
        s.feed.close();
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    while active.load(SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if let HttpListener::Unix(_, path, id) = &listener {
        if listener::socket_id(path) == Some(*id) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Every request: admitted ([`access`]), then routed ([`routes`]).
fn handle(rq: Request, shared: &Shared) {
    if let Some((rq, id)) = access::admit(rq, shared) {
        let url = rq.target.clone();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        routes::route(rq, path, query, shared, &id);
    }
}
