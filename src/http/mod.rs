//! The HTTP side: one blocking thread per connection, the newest frame for every stream client.
//!
//! The connection layer ([`server`]) accepts, reads one request head within a deadline and
//! hands it to a thread; this file owns the listener, access control and routing. We build the
//! listener ourselves and set, once, socket options that every accepted socket inherits on
//! Linux:
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
//! Submodules: [`server`] is the connection layer; [`endpoints`] writes `/stream` and `/snapshot`;
//! [`pages`] makes `/status`, `/state`, `/metrics` and the HTML pages; [`inflight`] is the
//! in-flight bound. Routing, including the URLs other servers use, is in [`route`].

mod endpoints;
pub mod inflight;
mod mux;
mod pages;
pub mod server;
pub mod tls;

pub use endpoints::{query_param, write_all_by, Layout, REPEAT_AFTER, SNAPSHOT_WAIT};

use crate::auth::{Auth, Verdict};
use crate::hub::Stream;
use crate::shutdown::Shutdown;
use server::{Body, Conn, Method, Request, Response};
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stack for request threads. They format a few headers and loop over `write`; 128 KiB is
/// plenty and keeps 2,000 threads within a 32-bit address space.
pub const CLIENT_STACK: usize = 128 * 1024;

/// Unsent bytes the kernel may hold per client socket before a write blocks.
pub const NOTSENT_LOWAT: u32 = 16 * 1024;

/// Settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub send_timeout: Duration,
    pub max_clients: usize,
    /// `--max-clients-per-ip`: connections from one address at once.
    pub max_clients_per_ip: usize,
    /// Basic and/or token; open when empty.
    pub auth: Auth,
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
}

/// Where HTTP is served: a TCP address, or a Unix socket for a reverse proxy on the same host.
#[derive(Debug)]
pub enum HttpListener {
    Tcp(TcpListener),
    /// The socket file's device and inode, so that only the socket we created is removed at
    /// exit (not a file someone put in its place meanwhile).
    Unix(UnixListener, PathBuf, (u64, u64)),
}

impl HttpListener {
    /// For the log: `127.0.0.1:8080` or `unix:/run/mjpeg-relay.sock`.
    pub fn describe(&self) -> String {
        match self {
            HttpListener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            HttpListener::Unix(_, p, _) => format!("unix:{}", p.display()),
        }
    }

    /// Whether clients from other hosts can reach it.
    pub fn is_public(&self) -> bool {
        match self {
            HttpListener::Tcp(l) => l.local_addr().is_ok_and(|a| !a.ip().is_loopback()),
            HttpListener::Unix(..) => false,
        }
    }
}

/// Binds the HTTP listener (`HOST:PORT` or `unix:PATH`) with the socket options described in
/// the module docs.
pub fn bind(addr: &str, cfg: &HttpConfig) -> io::Result<HttpListener> {
    if let Some(path) = addr.strip_prefix("unix:") {
        return bind_unix(path.into(), cfg.max_clients);
    }
    let listener = TcpListener::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => {
                "; is another relay (or another server) using that port? Choose another with \
                 --http HOST:PORT"
            }
            io::ErrorKind::PermissionDenied => {
                "; ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a higher one with \
                 --http HOST:PORT"
            }
            io::ErrorKind::AddrNotAvailable => {
                "; that address is not one of this host's: --http 0.0.0.0:PORT listens on all"
            }
            _ => "",
        };
        let e = crate::source::reconnect::describe_io(&e);
        io::Error::other(format!(
            "cannot listen for HTTP on {addr} (--http): {e}{hint}"
        ))
    })?;
    let fd = listener.as_raw_fd();
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    setsockopt_int(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        NOTSENT_LOWAT as i32,
    )?;
    setsockopt_timeout(fd, libc::SO_SNDTIMEO, cfg.send_timeout)?;
    widen_backlog(fd, cfg.max_clients)?;
    Ok(HttpListener::Tcp(listener))
}

/// std listens with a backlog of 128. When a page (or a wall of monitors) opens hundreds of
/// streams at once, the acceptor, which starts a thread per connection, falls behind that
/// queue, and the kernel drops connections (the benchmark saw 83 resets at 1000 clients).
/// Calling listen() again on a listening socket only changes its backlog; the kernel caps it
/// at net.core.somaxconn.
fn widen_backlog(fd: i32, max_clients: usize) -> io::Result<()> {
    let backlog = max_clients.clamp(128, 65_535) as i32;
    // SAFETY: listen on a socket descriptor we own.
    if unsafe { libc::listen(fd, backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A Unix socket for a reverse proxy. A socket file left by a relay that died is replaced; one
/// that a running relay still answers on is not, and anything that is not a socket (a regular
/// file, a directory, a link) is never touched: `--http unix:notes.txt` must not delete notes.
fn bind_unix(path: PathBuf, max_clients: usize) -> io::Result<HttpListener> {
    use std::os::unix::fs::FileTypeExt;
    let refuse = |kind: io::ErrorKind, why: String| {
        io::Error::new(
            kind,
            format!("cannot listen for HTTP on unix:{}: {why}", path.display()),
        )
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(refuse(
                    io::ErrorKind::AddrInUse,
                    "another process is serving there".into(),
                ));
            }
            // A socket nobody answers on: left by a relay that died.
            std::fs::remove_file(&path)?;
        }
        Ok(meta) => {
            let what = if meta.is_dir() {
                "a directory"
            } else if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a file"
            };
            return Err(refuse(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{what} is there, not a socket; it is left alone. Choose another path for \
                     --http unix:PATH (e.g. /run/mjpeg-relay/http.sock)"
                ),
            ));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(&path).map_err(|e| refuse(e.kind(), e.to_string()))?;
    widen_backlog(listener.as_raw_fd(), max_clients)?;
    let id = socket_id(&path).ok_or_else(|| refuse(io::ErrorKind::NotFound, "vanished".into()))?;
    Ok(HttpListener::Unix(listener, path, id))
}

/// Device and inode of the socket file at `path`, if a socket is there.
fn socket_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type()
        .is_socket()
        .then(|| (meta.dev(), meta.ino()))
}

fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: fd is a valid socket owned by the caller; the option value is a plain c_int that
    // lives for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setsockopt_timeout(fd: i32, name: i32, d: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: as above; timeval is the documented type of SO_SNDTIMEO / SO_RCVTIMEO.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Everything a request thread needs.
struct Shared {
    /// Served on a Unix socket (behind a proxy, which routes by its own server names).
    unix: bool,
    streams: Vec<Arc<Stream>>,
    /// Streams are served under `/NAME/` (from `--stream`), not at the plain paths.
    named: bool,
    cfg: HttpConfig,
    started: Instant,
}

/// Send buffer for each accepted Unix-socket connection (the kernel doubles it for its own
/// bookkeeping). Unix sockets have no `TCP_NOTSENT_LOWAT`, and an accepted one would otherwise
/// take the system default (~200 KB): behind a proxy, seconds of old frames for a slow viewer
/// (measured through nginx: 87 to 92 frames behind at a tenth of the bitrate, 40 to 58 with
/// this).
pub const UNIX_SNDBUF: i32 = 8 * 1024;

fn on_accept(conn: &Conn) {
    if let Conn::Unix(s) = conn {
        let _ = setsockopt_int(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            UNIX_SNDBUF,
        );
    }
}

/// Serves HTTP on `listener` until `shutdown` says stop, then wakes every client (by closing
/// the slots they sleep on) and returns once they have ended, or after a short grace period
/// (the caller exits the process either way).
pub fn serve(
    listener: HttpListener,
    streams: Vec<Arc<Stream>>,
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
        on_accept,
        max_per_addr: cfg.max_clients_per_ip,
        tls: cfg.tls.clone(),
    };
    let shared = Arc::new(Shared {
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
    for s in &shared.streams {
        s.slot.close();
    }
    crate::hub::ANY_FRAME.close();
    let deadline = Instant::now() + Duration::from_millis(500);
    while active.load(SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if let HttpListener::Unix(_, path, id) = &listener {
        if socket_id(path) == Some(*id) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Failed logins and refused `Host`s: logged once, then summarised.
static LOGIN_LOG: crate::logger::Throttled = crate::logger::Throttled::new();
static REBIND_LOG: crate::logger::Throttled = crate::logger::Throttled::new();

/// The host name of a `Host` value: without its port, brackets kept off an IPv6 literal.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Without authentication, a web page the user visits could read `/snapshot` and `/status`
/// through a hostname it rebinds to this relay's address (DNS rebinding). A browser sends the
/// name it resolved in `Host`, so the relay answers only IP literals, `localhost` (and
/// `*.localhost`, which resolves to loopback) and the names given with `--allow-host`.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host).trim_end_matches('.');
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || allowed
            .iter()
            .any(|a| a.trim_end_matches('.').eq_ignore_ascii_case(name))
}

/// Authentication, CORS preflight and the method check, then [`route`].
fn handle(rq: Request, shared: &Shared) {
    let url = rq.target.clone();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if rq.method == Method::Options && shared.cfg.allow_origin.is_some() {
        let resp = Response::empty(204)
            .with_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            .with_header("Access-Control-Allow-Headers", "Authorization")
            .with_header("Access-Control-Max-Age", "600");
        return send(rq, resp, shared);
    }
    if shared.cfg.auth.is_open() && !shared.unix {
        if let Some(host) = rq
            .header("Host")
            .filter(|h| !host_allowed(h, &shared.cfg.allow_hosts))
        {
            let host = host.to_string();
            REBIND_LOG.note(|more| {
                log::warn!(
                    "{}: refused Host '{host}' (not an IP address, localhost or an --allow-host \
                     name){}",
                    rq.peer,
                    crate::logger::more(more)
                )
            });
            let msg = format!(
                "This relay has no authentication, so it answers only requests addressed to an \
                 IP address or localhost (a defence against DNS rebinding). To use the name \
                 '{host}', start it with --allow-host {}, or set --auth or --token.\n",
                host_name(&host)
            );
            return send(rq, text(403, &msg), shared);
        }
    }
    if !shared.cfg.auth.is_open() {
        let token = query_param(query, "token");
        let verdict = shared
            .cfg
            .auth
            .check(rq.header("Authorization"), token.as_deref());
        if verdict != Verdict::Allowed {
            if verdict == Verdict::Wrong {
                LOGIN_LOG.note(|more| {
                    log::warn!(
                        "{}: wrong credentials for {path}{}",
                        rq.peer,
                        crate::logger::more(more)
                    )
                });
            }
            let challenge = if shared.cfg.auth.has_basic() {
                r#"Basic realm="mjpeg-relay", charset="UTF-8""#
            } else {
                r#"Bearer realm="mjpeg-relay""#
            };
            let resp =
                text(401, "Authentication required.\n").with_header("WWW-Authenticate", challenge);
            return send(rq, resp, shared);
        }
    }
    if !matches!(rq.method, Method::Get | Method::Head) {
        let resp =
            text(405, "Only GET and HEAD are supported.\n").with_header("Allow", "GET, HEAD");
        return send(rq, resp, shared);
    }
    let (path, query) = (path.to_string(), query.to_string());
    route(rq, &path, &query, shared);
}

/// Which stream a URL without a stream name means: the only one, or the first `--stream`.
fn first(shared: &Shared) -> &Arc<Stream> {
    &shared.streams[0]
}

/// Our URLs, and those of the servers people migrate from, so their configurations keep
/// working unchanged:
///
/// | URL | from | serves |
/// |---|---|---|
/// | `/?action=stream`, `/?action=snapshot` | mjpg-streamer (OctoPrint, Mainsail, Fluidd) | first stream |
/// | `/stream`, `/snapshot`, `/state` | ustreamer | first stream; `/state` in ustreamer's shape |
/// | `/api/stream.mjpeg?src=NAME`, `/api/frame.jpeg?src=NAME` | go2rtc (Frigate, Home Assistant) | stream NAME (first without `src`) |
/// | `/stream.mjpeg` | the classic Twisted relay | first stream |
fn route(rq: Request, path: &str, query: &str, shared: &Shared) {
    match (path, query_param(query, "action").as_deref()) {
        ("/", Some("stream")) => return endpoints::serve_stream(rq, first(shared), query, shared),
        ("/", Some("snapshot")) => return endpoints::serve_snapshot(rq, first(shared), shared),
        _ => {}
    }
    match path {
        "/status" => return pages::serve_status(rq, shared, None),
        "/metrics" => return pages::serve_metrics(rq, shared),
        "/mux" => return mux::serve_mux(rq, query, shared),
        "/state" => return pages::serve_state(rq, shared),
        "/stream" | "/stream.mjpeg" => {
            return endpoints::serve_stream(rq, first(shared), query, shared)
        }
        "/snapshot" => return endpoints::serve_snapshot(rq, first(shared), shared),
        "/api/stream.mjpeg" | "/api/frame.jpeg" => {
            let stream = match query_param(query, "src").as_deref() {
                None | Some("") => first(shared),
                Some(name) => match shared.streams.iter().find(|s| s.name == name) {
                    Some(s) => s,
                    None => {
                        let msg = format!("No stream named '{name}'.\n");
                        return send(rq, text(404, &msg), shared);
                    }
                },
            };
            return if path == "/api/stream.mjpeg" {
                endpoints::serve_stream(rq, stream, query, shared)
            } else {
                endpoints::serve_snapshot(rq, stream, shared)
            };
        }
        "/viewer" => return send(rq, html(pages::VIEWER_HTML), shared),
        "/" if shared.cfg.static_dir.is_none() => {
            let page = if shared.named {
                pages::index_html(&shared.streams, query_param(query, "token").as_deref())
            } else {
                pages::VIEWER_HTML.to_string()
            };
            return send(rq, html(&page), shared);
        }
        _ => {}
    }
    if shared.named {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let name = parts.next().unwrap_or("");
        if let Some(stream) = shared.streams.iter().find(|s| s.name == name) {
            return match parts.next() {
                // The viewer uses relative URLs, so it needs the trailing slash.
                None => {
                    // Keep the query: a `?token=` login must survive the redirect.
                    let to = match query {
                        "" => format!("/{name}/"),
                        q => format!("/{name}/?{q}"),
                    };
                    let resp = text(301, "Moved.\n").with_header("Location", &to);
                    send(rq, resp, shared)
                }
                Some("") => send(rq, html(pages::VIEWER_HTML), shared),
                Some("stream") => endpoints::serve_stream(rq, stream, query, shared),
                Some("snapshot") => endpoints::serve_snapshot(rq, stream, shared),
                Some("status") => pages::serve_status(rq, shared, Some(stream)),
                Some(_) => {
                    let msg =
                        format!("Not found. Try /{name}/, /{name}/stream, /{name}/snapshot.\n");
                    send(rq, text(404, &msg), shared)
                }
            };
        }
    }
    if let Some(root) = &shared.cfg.static_dir {
        return serve_static(rq, root, path, shared);
    }
    let msg = if shared.named {
        let list: Vec<_> = shared
            .streams
            .iter()
            .map(|s| format!("/{}/stream", s.name))
            .collect();
        format!(
            "Not found. This relay serves several streams: {}; the list is at /.\n",
            list.join(", ")
        )
    } else {
        "Not found. Try /, /stream, /snapshot, /status or /metrics.\n".to_string()
    };
    send(rq, text(404, &msg), shared)
}

fn serve_static(rq: Request, root: &std::path::Path, path: &str, shared: &Shared) {
    use crate::static_files::{content_type, resolve, Refusal};
    match resolve(root, path) {
        Ok(file) => match std::fs::File::open(&file).and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((len, f)) => {
                let resp = Response::new(200, Body::File(f, len))
                    .with_header("Content-Type", content_type(&file));
                send(rq, resp, shared)
            }
            Err(_) => send(rq, text(404, "Not found.\n"), shared),
        },
        Err(Refusal::NotFound) => send(rq, text(404, "Not found.\n"), shared),
        Err(Refusal::Forbidden) => {
            log::warn!("{}: refused path {path:?} (outside --static)", rq.peer);
            send(rq, text(403, "Forbidden.\n"), shared)
        }
    }
}

/// Every response goes out through here, so CORS and `nosniff` apply to all of them. No
/// `Access-Control-Allow-Credentials`: another origin's page may read what the relay serves
/// without credentials (with `?token=` in the URL), never with the browser's stored login.
fn send(rq: Request, resp: Response, shared: &Shared) {
    let resp = resp.with_header("X-Content-Type-Options", "nosniff");
    let resp = match &shared.cfg.allow_origin {
        Some(origin) => resp
            .with_header("Access-Control-Allow-Origin", origin)
            .with_header("Vary", "Origin"),
        None => resp,
    };
    let status = resp.status();
    if let Err(e) = rq.respond(resp) {
        log::debug!("response {status} not delivered: {e}");
    }
}

pub(crate) trait NoCache {
    fn no_cache(self) -> Self;
}

impl NoCache for Response {
    fn no_cache(self) -> Self {
        self.with_header(
            "Cache-Control",
            "no-cache, no-store, must-revalidate, max-age=0",
        )
        .with_header("Pragma", "no-cache")
        .with_header("Expires", "0")
    }
}

pub(crate) fn text(code: u16, body: &str) -> Response {
    Response::bytes(code, body)
        .with_header("Content-Type", "text/plain; charset=utf-8")
        .no_cache()
}

pub(crate) fn html(body: &str) -> Response {
    Response::bytes(200, body)
        .with_header("Content-Type", "text/html; charset=utf-8")
        .no_cache()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_match_with_and_without_a_trailing_dot() {
        let allowed = vec!["cams.example.test.".to_string(), "door.local".to_string()];
        for host in [
            "cams.example.test",
            "cams.example.test.",
            "CAMS.example.test:8080",
            "door.local.:80",
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost",
            "x.localhost",
        ] {
            assert!(host_allowed(host, &allowed), "{host}");
        }
        for host in ["evil.example", "cams.example.test.evil", "door.local.x"] {
            assert!(!host_allowed(host, &allowed), "{host}");
        }
    }
}
