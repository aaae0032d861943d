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

use crate::multipart::{ADVANCE_OPENING, BOUNDARY, FRAMED_OPENING};
use crate::slot::{Frame, Next};
use crate::stream::Stream;
use serde_json::json;
use std::io::{self, Cursor, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tiny_http::{Header, Request, Response, StatusCode};

/// Stack for request threads. They format a few headers and loop over `write`; 128 KiB is
/// plenty and keeps 2,000 threads within a 32-bit address space.
pub const CLIENT_STACK: usize = 128 * 1024;

/// Unsent bytes the kernel may hold per client socket before a write blocks.
pub const NOTSENT_LOWAT: u32 = 16 * 1024;

/// How long one read of a request may wait for bytes, or a connection may sit idle between
/// requests. See the module docs for why it is short.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// If no new frame arrives for this long, the current one is sent again, so a still scene or a
/// paused source stays painted and proxies do not time the connection out.
pub const REPEAT_AFTER: Duration = Duration::from_secs(1);

/// How long `/snapshot` waits for a first frame before answering 503.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

/// Settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub send_timeout: Duration,
    pub max_clients: usize,
}

/// How parts are laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Each part with `Content-Length` and `X-Timestamp`, and the next boundary line right
    /// after the frame. For programs that need a length.
    Framed,
    /// Right after each frame, the *next* part's whole header block (boundary line and
    /// `Content-Type`). Chromium paints a part only once the next part's header block has
    /// arrived; this layout lets it paint at once instead of one frame interval later.
    Advance,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Framed => "framed",
            Layout::Advance => "advance",
        }
    }

    /// Browsers (`User-Agent: Mozilla/…`) get `Advance`, everything else `Framed`;
    /// `?advance_headers=1|0` (ustreamer's name) overrides.
    pub fn choose(user_agent: &str, query: &str) -> Layout {
        match query_param(query, "advance_headers") {
            Some("1") | Some("true") | Some("yes") => return Layout::Advance,
            Some("0") | Some("false") | Some("no") => return Layout::Framed,
            _ => {}
        }
        if user_agent.starts_with("Mozilla/") {
            Layout::Advance
        } else {
            Layout::Framed
        }
    }
}

/// The value of `name` in a query string (no percent-decoding: our values are plain).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Binds the HTTP listener with the socket options described in the module docs.
pub fn bind(addr: &str, cfg: &HttpConfig) -> io::Result<TcpListener> {
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
    Ok(listener)
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
}

/// Serves HTTP on `listener` until `shutdown` is set, then wakes every client and returns once
/// they have ended (or after a short grace period; the caller exits the process either way).
pub fn serve(
    listener: TcpListener,
    streams: Vec<Arc<Stream>>,
    named: bool,
    cfg: HttpConfig,
    shutdown: &AtomicBool,
) -> io::Result<()> {
    let shared = Arc::new(Shared {
        streams,
        named,
        cfg,
        started: Instant::now(),
        active: AtomicUsize::new(0),
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
                server = tiny(&listener)?;
            }
            Err(e) => {
                // tiny_http's accept thread stops on its first accept error (e.g. out of file
                // descriptors). Start a fresh one on the same socket after a pause.
                log::error!("accepting HTTP connections failed: {e}; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
                server = tiny(&listener)?;
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

fn tiny(listener: &TcpListener) -> io::Result<tiny_http::Server> {
    tiny_http::Server::from_listener(listener.try_clone()?, None).map_err(io::Error::other)
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
        let _ = rq.respond(text(503, "Too many clients; try again later.\n"));
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
            let _ = rq.respond(text(503, "Server busy; try again later.\n"));
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

fn handle(rq: Request, shared: &Shared) {
    let method = rq.method().clone();
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        let resp = text(405, "Only GET and HEAD are supported.\n")
            .with_header(header("Allow", "GET, HEAD"));
        let _ = rq.respond(resp);
        return;
    }
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if !shared.named {
        let default = &shared.streams[0];
        return match path {
            "/" => {
                let _ = rq.respond(html(VIEWER_HTML));
            }
            "/stream" => serve_stream(rq, default, query, shared),
            "/snapshot" => serve_snapshot(rq, default),
            "/status" => serve_status(rq, shared, None),
            _ => {
                let _ = rq.respond(text(
                    404,
                    "Not found. Try /, /stream, /snapshot or /status.\n",
                ));
            }
        };
    }
    if path == "/" {
        let _ = rq.respond(html(&index_html(&shared.streams)));
        return;
    }
    if path == "/status" {
        return serve_status(rq, shared, None);
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let name = parts.next().unwrap_or("");
    let rest = parts.next();
    let Some(stream) = shared.streams.iter().find(|s| s.name == name) else {
        let list: Vec<_> = shared
            .streams
            .iter()
            .map(|s| format!("/{}/stream", s.name))
            .collect();
        let msg = format!(
            "Not found. This relay serves several streams: {}; the list is at /.\n",
            list.join(", ")
        );
        let _ = rq.respond(text(404, &msg));
        return;
    };
    match rest {
        // The viewer uses relative URLs, so it needs the trailing slash.
        None => {
            let to = format!("/{name}/");
            let _ = rq.respond(text(301, "Moved.\n").with_header(header("Location", &to)));
        }
        Some("") => {
            let _ = rq.respond(html(VIEWER_HTML));
        }
        Some("stream") => serve_stream(rq, stream, query, shared),
        Some("snapshot") => serve_snapshot(rq, stream),
        Some("status") => serve_status(rq, shared, Some(stream)),
        Some(_) => {
            let msg = format!("Not found. Try /{name}/, /{name}/stream, /{name}/snapshot.\n");
            let _ = rq.respond(text(404, &msg));
        }
    }
}

fn serve_status(rq: Request, shared: &Shared, only: Option<&Arc<Stream>>) {
    let body = status_json(shared, only).to_string();
    let _ = rq.respond(
        Response::from_string(body)
            .with_header(header("Content-Type", "application/json"))
            .with_no_cache(),
    );
}

/// The stream list for `--stream` setups. Browsers open at most six HTTP/1.1 connections per
/// host, and every live MJPEG preview holds one for good; past four streams the previews are
/// snapshots refreshed every second, so the page never starves its own links.
fn index_html(streams: &[Arc<Stream>]) -> String {
    let live = streams.len() <= 4;
    let mut cards = String::new();
    for s in streams {
        // Names are letters, digits, - and _ (checked at start-up): safe in HTML and URLs.
        let n = &s.name;
        let img = if live {
            format!("<img src=\"/{n}/stream\" alt=\"{n}\">")
        } else {
            format!("<img class=\"snap\" data-src=\"/{n}/snapshot\" alt=\"{n}\">")
        };
        cards.push_str(&format!(
            "<a class=\"card\" href=\"/{n}/\">{img}<span>{n}</span></a>\n"
        ));
    }
    INDEX_HTML.replace("{{cards}}", &cards)
}

const INDEX_HTML: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>mjpeg-relay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{margin:0;background:#111;color:#ddd;font:14px system-ui,sans-serif}
h1{font-size:16px;font-weight:normal;margin:12px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px;padding:0 12px 12px}
.card{display:block;color:#ddd;text-decoration:none;background:#000}
.card img{width:100%;display:block;aspect-ratio:4/3;object-fit:contain}
.card span{display:block;padding:6px}
</style></head><body>
<h1>mjpeg-relay &middot; <a href="/status" style="color:#8af">status</a></h1>
<main>
{{cards}}</main>
<script>
// Snapshot previews (more than four streams): refresh each once a second.
function refresh() {
  for (const img of document.querySelectorAll("img.snap")) {
    img.src = img.dataset.src + "?t=" + Date.now();
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
"#;

/// A frame's bytes as a response body, without copying them.
struct FrameBody(Arc<Frame>);

impl AsRef<[u8]> for FrameBody {
    fn as_ref(&self) -> &[u8] {
        self.0.jpeg()
    }
}

/// The newest real frame, waiting up to [`SNAPSHOT_WAIT`] for one. A NO SIGNAL picture is
/// not a snapshot: a program storing snapshots must not mistake it for the camera's view.
fn newest_real_frame(stream: &Stream) -> Option<Arc<Frame>> {
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    let mut seen = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stream.slot.wait_newer(seen, left) {
            Next::Frame(frame, _) if !crate::nosignal::is_no_signal(frame.jpeg()) => {
                return Some(frame)
            }
            Next::Frame(_, generation) if !left.is_zero() => seen = generation,
            _ => return None,
        }
    }
}

fn serve_snapshot(rq: Request, stream: &Stream) {
    match newest_real_frame(stream) {
        Some(frame) => {
            let len = frame.jpeg().len();
            let ts = timestamp(frame.arrived);
            let resp = Response::new(
                StatusCode(200),
                vec![
                    header("Content-Type", "image/jpeg"),
                    header("X-Timestamp", &ts),
                ],
                Cursor::new(FrameBody(frame)),
                Some(len),
                None,
            )
            .with_no_cache();
            let _ = rq.respond(resp);
        }
        None => {
            let state = stream.source_info().state.as_str();
            let msg = format!(
                "No frame from the source yet (source state: {state}). Try again shortly.\n"
            );
            let _ = rq.respond(text(503, &msg).with_header(header("Retry-After", "1")));
        }
    }
}

fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// The long-lived `/stream` response. Runs until the client goes away, a frame cannot be
/// delivered within `--send-timeout`, or the server shuts down.
fn serve_stream(rq: Request, stream: &Stream, query: &str, shared: &Shared) {
    let user_agent = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("User-Agent"))
        .map(|h| h.value.as_str().to_string())
        .unwrap_or_default();
    let layout = Layout::choose(&user_agent, query);
    let http10 = *rq.http_version() == (1, 0);
    let is_head = *rq.method() == tiny_http::Method::Head;
    let addr = peer(&rq);
    // From here on we write the response ourselves: tiny_http would buffer or chunk it.
    let mut w = rq.into_writer();
    let head = format!(
        "HTTP/1.{} 200 OK\r\n\
         Content-Type: multipart/x-mixed-replace;boundary={BOUNDARY}\r\n\
         Cache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n\
         Pragma: no-cache\r\n\
         Expires: 0\r\n\
         X-Accel-Buffering: no\r\n\
         Connection: close\r\n\r\n",
        if http10 { 0 } else { 1 }
    );
    let deadline = Instant::now() + shared.cfg.send_timeout;
    if write_all_by(&mut w, head.as_bytes(), deadline)
        .and_then(|_| w.flush())
        .is_err()
        || is_head
    {
        return;
    }
    let opening = match layout {
        Layout::Framed => FRAMED_OPENING,
        Layout::Advance => ADVANCE_OPENING,
    };
    let deadline = Instant::now() + shared.cfg.send_timeout;
    if write_all_by(&mut w, opening, deadline).is_err() {
        return;
    }

    let reg = stream
        .clients
        .register(addr.clone(), user_agent, layout.as_str());
    let info = &reg.info;
    log::info!(
        "viewer {addr} connected to stream '{}' ({} layout)",
        stream.name,
        layout.as_str()
    );
    let mut seen_gen = 0;
    let mut last: Option<Arc<Frame>> = None;
    let mut last_write = Instant::now();
    let end = loop {
        // Repeat the current frame once nothing was written for REPEAT_AFTER.
        let wait = (last_write + REPEAT_AFTER).saturating_duration_since(Instant::now());
        let (frame, repeat) = match stream.slot.wait_newer(seen_gen, wait) {
            Next::Frame(frame, generation) => {
                seen_gen = generation;
                (frame, false)
            }
            Next::Timeout => match &last {
                Some(f) => (f.clone(), true),
                None => {
                    last_write = Instant::now();
                    continue;
                }
            },
            Next::Closed => break "server shutting down".to_string(),
        };
        if let Some(prev) = &last {
            if !repeat && frame.seq > prev.seq + 1 {
                info.frames_skipped
                    .fetch_add(frame.seq - prev.seq - 1, SeqCst);
            }
        }
        let bytes = match layout {
            Layout::Framed => frame.wire.framed(),
            Layout::Advance => frame.wire.advance(),
        };
        // One write per frame: the wire form is contiguous (see the multipart module).
        let deadline = Instant::now() + shared.cfg.send_timeout;
        if let Err(e) = write_all_by(&mut w, bytes, deadline).and_then(|_| w.flush()) {
            break describe_write_error(&e, shared.cfg.send_timeout);
        }
        last_write = Instant::now();
        info.bytes_sent.fetch_add(bytes.len() as u64, SeqCst);
        if repeat {
            info.repeats.fetch_add(1, SeqCst);
        } else {
            info.frames_sent.fetch_add(1, SeqCst);
        }
        last = Some(frame);
    };
    log::info!(
        "viewer {addr} left stream '{}' after {:.1} s: {} frames sent, {} skipped ({end})",
        stream.name,
        info.connected_at.elapsed().as_secs_f64(),
        info.frames_sent.load(SeqCst),
        info.frames_skipped.load(SeqCst),
    );
}

fn describe_write_error(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "could not take a frame within --send-timeout {} s; disconnected",
            timeout.as_secs_f64()
        ),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => "client closed".into(),
        _ => format!("write failed: {e}"),
    }
}

/// `write_all`, but giving up once `deadline` has passed. The socket's `SO_SNDTIMEO` bounds
/// each single write; this bounds the whole frame, so a client that drains a few bytes now and
/// then cannot keep its thread forever.
pub fn write_all_by(w: &mut dyn Write, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if !buf.is_empty() && Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
    Ok(())
}

fn status_json(shared: &Shared, only: Option<&Arc<Stream>>) -> serde_json::Value {
    let streams: Vec<_> = shared
        .streams
        .iter()
        .filter(|s| only.is_none_or(|o| Arc::ptr_eq(o, s)))
        .map(|s| {
            let info = s.source_info();
            let (fps, bps) = s.input_rate();
            let src = &s.source;
            let clients: Vec<_> = s
                .clients
                .snapshot()
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "address": c.addr,
                        "user_agent": c.user_agent,
                        "layout": c.layout,
                        "connected_s": round3(c.connected_at.elapsed().as_secs_f64()),
                        "frames_sent": c.frames_sent.load(SeqCst),
                        "frames_skipped": c.frames_skipped.load(SeqCst),
                        "repeats": c.repeats.load(SeqCst),
                        "bytes_sent": c.bytes_sent.load(SeqCst),
                    })
                })
                .collect();
            let path = if shared.named {
                format!("/{}/stream", s.name)
            } else {
                "/stream".to_string()
            };
            let connections = src.connections.load(SeqCst);
            json!({
                "name": s.name,
                "path": path,
                "source": {
                    "spec": s.spec,
                    "state": info.state.as_str(),
                    "address": info.peer,
                    "format": info.format,
                    "state_for_s": round3(info.since.elapsed().as_secs_f64()),
                    "connections": connections,
                    "reconnects": connections.saturating_sub(1),
                    "frames_in": src.frames_in.load(SeqCst),
                    "bytes_in": src.bytes_in.load(SeqCst),
                    "fps": round3(fps),
                    "bitrate_bps": bps.round(),
                    "last_frame_age_s": s.last_frame_age().map(|a| round3(a.as_secs_f64())),
                    "dropped": {
                        "not_jpeg": src.not_jpeg.load(SeqCst),
                        "oversized": src.oversized.load(SeqCst),
                        "header_too_long": src.header_too_long.load(SeqCst),
                    },
                    "garbage_bytes": src.garbage_bytes.load(SeqCst),
                },
                "clients_connected": clients.len(),
                "clients": clients,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": round3(shared.started.elapsed().as_secs_f64()),
        "streams": streams,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

trait NoCache {
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

fn text(code: u16, body: &str) -> Response<Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(code)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
        .with_no_cache()
}

fn html(body: &str) -> Response<Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
        .with_no_cache()
}

const VIEWER_HTML: &str = include_str!("viewer.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_choice() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0";
        assert_eq!(Layout::choose(chrome, ""), Layout::Advance);
        assert_eq!(Layout::choose(chrome, "advance_headers=0"), Layout::Framed);
        assert_eq!(Layout::choose("curl/8.0", ""), Layout::Framed);
        assert_eq!(
            Layout::choose("curl/8.0", "x=1&advance_headers=1"),
            Layout::Advance
        );
        assert_eq!(Layout::choose("", ""), Layout::Framed);
    }

    #[test]
    fn write_all_by_gives_up_after_the_deadline() {
        struct Trickle(usize);
        impl Write for Trickle {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                std::thread::sleep(Duration::from_millis(5));
                Ok(b.len().min(1))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut t = Trickle(0);
        let r = write_all_by(
            &mut t,
            &[0; 1000],
            Instant::now() + Duration::from_millis(30),
        );
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(t.0 < 20);
    }
}
