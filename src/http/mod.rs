//! The HTTP side: one blocking thread per request, the newest frame for every stream client.
//!
//! tiny_http parses requests; we build its listener ourselves so we can set, once, socket
//! options that every accepted socket inherits on Linux:
//!
//! * `TCP_NOTSENT_LOWAT` (16 KiB): the kernel's send buffer is a queue too. By default a client
//!   that stops reading lets several megabytes (70 frames of 50 KB, measured) pile up before a
//!   write blocks, and those are old frames it will still have to show. With the low-water mark
//!   a write blocks once ~16 KiB are unsent, so the frame we pick next is the newest one.
//! * `SO_SNDTIMEO` (`--send-timeout`): a write that makes no progress for that long fails, and
//!   [`write_all_by`] also gives each frame that long in total, so one stuck client ends its own
//!   thread and never holds anything another client needs.
//! * `TCP_NODELAY`: the boundary written after a frame must leave now, not wait for an ACK.
//! * `SO_RCVTIMEO` ([`READ_TIMEOUT`]): a read that gets nothing for that long ends tiny_http's
//!   connection thread. That bounds idle keep-alive connections, frees tiny_http's second
//!   thread of every streaming client two seconds in (it sits reading the next request, which
//!   never comes), and bounds a wake-up race in tiny_http's thread pool: in a burst of
//!   connections, those beyond the idle pool threads wait in its queue until some pool thread
//!   finishes (measured: 6 of 100 simultaneous clients waited the full timeout).
//!
//! Streams go out as `multipart/x-mixed-replace` in one of two part layouts, see [`Layout`].
//!
//! Submodules: [`stream`] writes `/stream` and `/snapshot`; [`pages`] makes `/status`, `/state`,
//! `/metrics` and the HTML pages. This file owns the listener, the request threads, access
//! control and routing, including the URLs other servers use (see [`route`]).

mod pages;
mod stream;

pub use stream::{query_param, write_all_by, Layout, REPEAT_AFTER, SNAPSHOT_WAIT};

use crate::auth::{Auth, Verdict};
use crate::stream::Stream;
use std::io::{self, Cursor};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tiny_http::{Header, Request, Response};

/// Stack for request threads. They format a few headers and loop over `write`; 128 KiB is
/// plenty and keeps 2,000 threads within a 32-bit address space.
pub const CLIENT_STACK: usize = 128 * 1024;

/// Unsent bytes the kernel may hold per client socket before a write blocks.
pub const NOTSENT_LOWAT: u32 = 16 * 1024;

/// How long one read of a request may wait for bytes, or a connection may sit idle between
/// requests. See the module docs for why it is short.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub send_timeout: Duration,
    pub max_clients: usize,
    /// Basic and/or token; open when empty.
    pub auth: Auth,
    /// `--allow-origin`: sent as `Access-Control-Allow-Origin` on every response.
    pub allow_origin: Option<String>,
    /// `--static DIR`, canonical: served at `/`, the viewer moves to `/viewer`.
    pub static_dir: Option<PathBuf>,
}

/// Where HTTP is served: a TCP address, or a Unix socket for a reverse proxy on the same host.
#[derive(Debug)]
pub enum HttpListener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl HttpListener {
    /// For the log: `127.0.0.1:8080` or `unix:/run/mjpeg-relay.sock`.
    pub fn describe(&self) -> String {
        match self {
            HttpListener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            HttpListener::Unix(_, p) => format!("unix:{}", p.display()),
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
        return bind_unix(path.into());
    }
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for HTTP on {addr}: {e}")))?;
    let fd = listener.as_raw_fd();
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    setsockopt_int(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        NOTSENT_LOWAT as i32,
    )?;
    setsockopt_timeout(fd, libc::SO_SNDTIMEO, cfg.send_timeout)?;
    setsockopt_timeout(fd, libc::SO_RCVTIMEO, READ_TIMEOUT)?;
    Ok(HttpListener::Tcp(listener))
}

/// A Unix socket for a reverse proxy. A socket file left by a relay that died is replaced; one
/// that a running relay still answers on is not.
fn bind_unix(path: PathBuf) -> io::Result<HttpListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "cannot listen for HTTP on unix:{}: another process is serving there",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen for HTTP on unix:{}: {e}", path.display()),
        )
    })?;
    // No SO_RCVTIMEO here: on a listening socket it would also time out accept(), and every
    // restart of tiny_http's accept thread removes the socket file (its Drop does). The peer is
    // a local proxy, not the network. The send buffer is bounded per connection instead, see
    // bound_unix_send_buffers.
    Ok(HttpListener::Unix(listener, path))
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
    streams: Vec<Arc<Stream>>,
    /// Streams are served under `/NAME/` (from `--stream`), not at the plain paths.
    named: bool,
    cfg: HttpConfig,
    started: Instant,
    /// Request threads alive now; never more than `cfg.max_clients`.
    active: AtomicUsize,
    /// Path and descriptor of the Unix listener, when serving on one.
    unix: Option<(PathBuf, i32)>,
}

/// Serves HTTP on `listener` until `shutdown` is set, then wakes every client and returns once
/// they have ended (or after a short grace period; the caller exits the process either way).
pub fn serve(
    listener: HttpListener,
    streams: Vec<Arc<Stream>>,
    named: bool,
    cfg: HttpConfig,
    shutdown: &AtomicBool,
) -> io::Result<()> {
    let unix = match &listener {
        HttpListener::Unix(l, p) => Some((p.clone(), l.as_raw_fd())),
        HttpListener::Tcp(_) => None,
    };
    let shared = Arc::new(Shared {
        streams,
        named,
        cfg,
        started: Instant::now(),
        active: AtomicUsize::new(0),
        unix,
    });
    let mut server = tiny(&listener)?;
    while !shutdown.load(SeqCst) {
        match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(rq)) => dispatch(rq, &shared),
            Ok(None) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Not a failure: the listener carries SO_RCVTIMEO for the sockets it accepts
                // (see READ_TIMEOUT), and on a listening socket the same option makes accept()
                // give up after that long without a new connection. tiny_http's accept thread
                // stops on any accept error, so start a fresh one at once; connections that
                // arrive meanwhile wait in the kernel's backlog.
                log::trace!("idle accept timed out; restarting the accept thread");
                server = restart(server, &listener)?;
            }
            Err(e) => {
                // tiny_http's accept thread stops on its first accept error (e.g. out of file
                // descriptors). Start a fresh one on the same socket after a pause.
                log::error!("accepting HTTP connections failed: {e}; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
                server = restart(server, &listener)?;
            }
        }
    }
    for s in &shared.streams {
        s.slot.close();
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    while shared.active.load(SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A fresh tiny_http server on the same socket. The old one is dropped, except on a Unix
/// socket: tiny_http's Drop removes the socket file, which would lock every client out. Its
/// accept thread has already ended; what is kept is a few bytes per (rare) restart.
fn restart(old: tiny_http::Server, listener: &HttpListener) -> io::Result<tiny_http::Server> {
    let new = tiny(listener)?;
    match listener {
        HttpListener::Tcp(_) => drop(old),
        HttpListener::Unix(..) => std::mem::forget(old),
    }
    Ok(new)
}

fn tiny(listener: &HttpListener) -> io::Result<tiny_http::Server> {
    let server = match listener {
        HttpListener::Tcp(l) => tiny_http::Server::from_listener(l.try_clone()?, None),
        HttpListener::Unix(l, _) => tiny_http::Server::from_listener(l.try_clone()?, None),
    };
    server.map_err(io::Error::other)
}
/// Send buffer for accepted Unix sockets (the kernel doubles it for its own bookkeeping).
pub const UNIX_SNDBUF: i32 = 8 * 1024;

/// Gives every accepted connection on our Unix socket a small send buffer.
///
/// Unix sockets have no `TCP_NOTSENT_LOWAT`, and an accepted one takes the system's default
/// send buffer (~200 KB) whatever the listener says: behind a proxy that is seconds of old
/// frames for a slow viewer (measured through nginx: 84 to 230 frames behind at a tenth of the
/// bitrate). tiny_http does not hand out its sockets, so this finds them: our descriptors that
/// are Unix sockets bound to our path, other than the listener. Called when a stream starts;
/// costs one `getsockname` per open descriptor.
fn bound_unix_send_buffers(path: &std::path::Path, listener_fd: i32) {
    use std::os::unix::ffi::OsStrExt;
    let want = path.as_os_str().as_bytes();
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in fds.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if fd == listener_fd {
            continue;
        }
        // SAFETY: getsockname on a descriptor of ours into a zeroed sockaddr_un of the right
        // size; a descriptor that is not a socket (or was just closed) makes it fail.
        let bound_here = unsafe {
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_un).cast(), &mut len) == 0
                && i32::from(addr.sun_family) == libc::AF_UNIX
                && addr
                    .sun_path
                    .iter()
                    .take_while(|c| **c != 0)
                    .map(|c| *c as u8)
                    .eq(want.iter().copied())
        };
        if bound_here {
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, UNIX_SNDBUF);
        }
    }
}

/// Hands a request to its own thread, or refuses it when `--max-clients` threads are busy.
fn dispatch(rq: Request, shared: &Arc<Shared>) {
    let n = shared.active.fetch_add(1, SeqCst) + 1;
    if n > shared.cfg.max_clients {
        shared.active.fetch_sub(1, SeqCst);
        log::warn!(
            "refusing {}: {} clients already connected (--max-clients)",
            peer(&rq),
            shared.cfg.max_clients
        );
        send(
            rq,
            text(503, "Too many clients; try again later.\n"),
            shared,
        );
        return;
    }
    let shared2 = shared.clone();
    // The request travels into the thread; if spawning fails we get it back to answer 503.
    let slot = Arc::new(parking_lot::Mutex::new(Some(rq)));
    let slot2 = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("http-client".into())
        .stack_size(CLIENT_STACK)
        .spawn(move || {
            let _active = ActiveGuard(&shared2.active);
            if let Some(rq) = slot2.lock().take() {
                handle(rq, &shared2);
            }
        });
    if let Err(e) = spawned {
        shared.active.fetch_sub(1, SeqCst);
        log::error!("cannot start a client thread: {e}; answering 503");
        if let Some(rq) = slot.lock().take() {
            send(rq, text(503, "Server busy; try again later.\n"), shared);
        }
    }
}

struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

fn peer(rq: &Request) -> String {
    rq.remote_addr()
        .map_or_else(|| "unknown peer".to_string(), SocketAddr::to_string)
}

/// Authentication, CORS preflight and the method check, then [`route`].
fn handle(rq: Request, shared: &Shared) {
    let method = rq.method().clone();
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if method == tiny_http::Method::Options && shared.cfg.allow_origin.is_some() {
        let resp = Response::empty(204)
            .with_header(header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"))
            .with_header(header("Access-Control-Allow-Headers", "Authorization"))
            .with_header(header("Access-Control-Max-Age", "600"));
        return send(rq, resp, shared);
    }
    if !shared.cfg.auth.is_open() {
        let authorization = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str().to_string());
        let token = query_param(query, "token");
        let verdict = shared.cfg.auth.check(authorization.as_deref(), token);
        if verdict != Verdict::Allowed {
            if verdict == Verdict::Wrong {
                log::warn!("{}: wrong credentials for {path}", peer(&rq));
            }
            let challenge = if shared.cfg.auth.has_basic() {
                r#"Basic realm="mjpeg-relay", charset="UTF-8""#
            } else {
                r#"Bearer realm="mjpeg-relay""#
            };
            let resp = text(401, "Authentication required.\n")
                .with_header(header("WWW-Authenticate", challenge));
            return send(rq, resp, shared);
        }
    }
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        let resp = text(405, "Only GET and HEAD are supported.\n")
            .with_header(header("Allow", "GET, HEAD"));
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
    match (path, query_param(query, "action")) {
        ("/", Some("stream")) => return stream::serve_stream(rq, first(shared), query, shared),
        ("/", Some("snapshot")) => return stream::serve_snapshot(rq, first(shared), shared),
        _ => {}
    }
    match path {
        "/status" => return pages::serve_status(rq, shared, None),
        "/metrics" => return pages::serve_metrics(rq, shared),
        "/state" => return pages::serve_state(rq, shared),
        "/stream" | "/stream.mjpeg" => {
            return stream::serve_stream(rq, first(shared), query, shared)
        }
        "/snapshot" => return stream::serve_snapshot(rq, first(shared), shared),
        "/api/stream.mjpeg" | "/api/frame.jpeg" => {
            let stream = match query_param(query, "src") {
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
                stream::serve_stream(rq, stream, query, shared)
            } else {
                stream::serve_snapshot(rq, stream, shared)
            };
        }
        "/viewer" => return send(rq, html(pages::VIEWER_HTML), shared),
        "/" if shared.cfg.static_dir.is_none() => {
            let page = if shared.named {
                pages::index_html(&shared.streams)
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
                    let to = format!("/{name}/");
                    let resp = text(301, "Moved.\n").with_header(header("Location", &to));
                    send(rq, resp, shared)
                }
                Some("") => send(rq, html(pages::VIEWER_HTML), shared),
                Some("stream") => stream::serve_stream(rq, stream, query, shared),
                Some("snapshot") => stream::serve_snapshot(rq, stream, shared),
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
        Ok(file) => match std::fs::File::open(&file) {
            Ok(f) => {
                let resp =
                    Response::from_file(f).with_header(header("Content-Type", content_type(&file)));
                send(rq, resp, shared)
            }
            Err(_) => send(rq, text(404, "Not found.\n"), shared),
        },
        Err(Refusal::NotFound) => send(rq, text(404, "Not found.\n"), shared),
        Err(Refusal::Forbidden) => {
            log::warn!("{}: refused path {path:?} (outside --static)", peer(&rq));
            send(rq, text(403, "Forbidden.\n"), shared)
        }
    }
}

/// Every response goes out through here, so CORS applies to all of them.
fn send<R: io::Read>(rq: Request, resp: Response<R>, shared: &Shared) {
    let resp = match &shared.cfg.allow_origin {
        Some(origin) => resp.with_header(header("Access-Control-Allow-Origin", origin)),
        None => resp,
    };
    let _ = rq.respond(resp);
}
pub(crate) fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

pub(crate) trait NoCache {
    fn with_no_cache(self) -> Self;
}

impl<R: io::Read> NoCache for Response<R> {
    fn with_no_cache(self) -> Self {
        self.with_header(header(
            "Cache-Control",
            "no-cache, no-store, must-revalidate, max-age=0",
        ))
        .with_header(header("Pragma", "no-cache"))
        .with_header(header("Expires", "0"))
    }
}

pub(crate) fn text(code: u16, body: &str) -> Response<Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(code)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
        .with_no_cache()
}

pub(crate) fn html(body: &str) -> Response<Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
        .with_no_cache()
}
