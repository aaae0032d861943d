#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! The two frame endpoints of one stream: the long-lived `/stream` response (a
//! [`Viewer`](super::viewer) of one track) and `/snapshot`, and what they share with `/mux`:
//! the part layouts, `?fps`, the never-ending response head, bounded writes.

use super::conn::{Body, Method, Request, Response};
use super::viewer::{Track, Viewer};
use super::{send, text, NoCache, Shared};
use crate::feed::SourceState;
use crate::frame::Frame;
use crate::hub::Stream;
use crate::multipart::{ADVANCE_OPENING, BOUNDARY, FRAMED_OPENING};
use crate::slot::Next;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// If no new frame arrives for this long, the current one is sent again, so a still scene or a
/// paused source stays painted and proxies do not time the connection out.
pub const REPEAT_AFTER: Duration = Duration::from_secs(1);

/// Bounds of `?fps=`: one frame in 100 s, up to more than any camera sends.
const MIN_FPS: f64 = 0.01;
const MAX_FPS: f64 = 1000.0;

/// How long `/snapshot` waits for a first frame before answering 503.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// The same for an `--on-demand` stream, whose source may have to start first (a camera
/// command, a connection to a camera).
pub const SNAPSHOT_WAIT_ON_DEMAND: Duration = Duration::from_secs(10);

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
        match query_param(query, "advance_headers").as_deref() {
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

/// The value of `name` in a query string, decoded: `%XX` escapes (a malformed one is kept as
/// it is) and `+` for a space, as browsers encode forms and `URLSearchParams`.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode_component(k) == name).then(|| decode_component(v))
    })
}

/// `%XX` and `+` decoding of one query component; invalid UTF-8 becomes U+FFFD.
fn decode_component(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = tail
                    .get(..2)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        rest = tail.get(2..).unwrap_or_default();
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
    // A waiting snapshot is someone watching: with --on-demand it starts the source, and the
    // frame it gets must be one the source made for it, not the one from before it slept.
    let _wants = stream.demand.snapshot_waits();
    let cold = stream.demand.on_demand()
        && matches!(
            stream.feed.source_info().state,
            SourceState::Idle | SourceState::Connecting
        );
    let wait = if stream.demand.on_demand() {
        SNAPSHOT_WAIT_ON_DEMAND
    } else {
        SNAPSHOT_WAIT
    };
    let deadline = Instant::now() + wait;
    let mut seen = if cold {
        stream.feed.slot.latest().map_or(0, |(_, g)| g)
    } else {
        0
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stream.feed.slot.wait_newer(seen, left) {
            Next::Frame(frame, _) if !crate::nosignal::is_no_signal(frame.jpeg()) => {
                return Some(frame)
            }
            Next::Frame(_, generation) if !left.is_zero() => seen = generation,
            _ => return None,
        }
    }
}

pub(super) fn serve_snapshot(rq: Request, stream: &Stream, shared: &Shared) {
    let info = stream.feed.source_info();
    // An ended source sends nothing more: answer at once, and do not invite a retry.
    let frame = match info.state {
        SourceState::Ended => None,
        _ => newest_real_frame(stream),
    };
    match frame {
        Some(frame) => {
            let ts = timestamp(frame.arrived);
            let resp = Response::new(200, Body::Shared(Arc::new(FrameBody(frame))))
                .with_header("Content-Type", "image/jpeg")
                .with_header("X-Timestamp", &ts)
                .no_cache();
            send(rq, resp, shared);
        }
        None => {
            let why = info
                .last_error
                .as_ref()
                .map(|(e, _)| format!(": {e}"))
                .unwrap_or_default();
            let since = info.since.elapsed().as_secs();
            let resp = match info.state {
                SourceState::Ended => text(
                    503,
                    &format!(
                        "The source ended {since} s ago{why}. No new picture will come; restart \
                         mjpeg-relay with a running source.\n"
                    ),
                ),
                SourceState::Connecting => text(
                    503,
                    "No frame from the source yet (connecting). Try again shortly.\n",
                )
                .with_header("Retry-After", "1"),
                _ => text(
                    503,
                    &format!(
                        "No live picture: the source has sent no frame for {} s{why}. The relay \
                         keeps reconnecting; try again later.\n",
                        stream
                            .feed
                            .last_frame_age()
                            .unwrap_or_else(|| stream.feed.created.elapsed())
                            .as_secs()
                    ),
                )
                .with_header("Retry-After", "5"),
            };
            send(rq, resp, shared);
        }
    }
}

fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// The long-lived `/stream` response: a [`Viewer`] of one track. Runs until the client goes
/// away, a frame cannot be delivered within `--send-timeout`, or the server shuts down.
pub(super) fn serve_stream(rq: Request, stream: &Stream, query: &str, shared: &Shared) {
    let fps_cap = match fps_cap(query) {
        Ok(f) => f,
        Err(msg) => return send(rq, text(400, &msg), shared),
    };
    if is_document_navigation(&rq, query) {
        let page = stream_page(&stream.name, &rq.target);
        return send(rq, page, shared);
    }
    let user_agent = rq.header("User-Agent").unwrap_or_default().to_string();
    let layout = Layout::choose(&user_agent, query);
    let http10 = rq.minor_version == 0;
    let is_head = rq.method == Method::Head;
    let addr = rq.peer.clone();
    let track = Track::new(
        stream,
        layout,
        Vec::new(),
        (&addr, &user_agent, layout.as_str(), fps_cap),
    );
    // A response that never ends: written by hand on the connection, never chunked or buffered.
    let what = format!("stream '{}'", stream.name);
    let mut viewer = Viewer::new(rq.into_conn(), addr, what, vec![track], fps_cap, shared);
    let opening = match layout {
        Layout::Framed => FRAMED_OPENING,
        Layout::Advance => ADVANCE_OPENING,
    };
    if viewer.open(multipart_head(http10, shared).as_bytes(), opening, is_head) {
        let cap_note = fps_cap
            .map(|f| format!(", capped at {f} fps"))
            .unwrap_or_default();
        viewer.run(&format!("{} layout{cap_note}", layout.as_str()));
    }
}

/// Whether the request opens the stream URL as a page (someone typed or tapped the link)
/// rather than as an image or a program's stream: `Sec-Fetch-Dest: document`, or, from a
/// browser too old to send it, an `Accept` that asks for HTML. `?page=0` never.
fn is_document_navigation(rq: &Request, query: &str) -> bool {
    if query_param(query, "page").as_deref() == Some("0") {
        return false;
    }
    match rq.header("Sec-Fetch-Dest") {
        Some(dest) => dest.eq_ignore_ascii_case("document"),
        None => rq.header("Accept").is_some_and(|a| a.contains("text/html")),
    }
}

/// A stream URL opened as a page gets a page that shows it: iOS Safari (and WebKit in
/// general) paints the first part of a multipart document and then stops, while the same
/// stream in an `<img>` stays live in every engine. The `<img>` asks for this very URL, as an
/// image (`Sec-Fetch-Dest: image`), so it gets the stream; programs never get this page.
fn stream_page(name: &str, target: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{name} · mjpeg-relay</title><style>html,body{{margin:0;height:100%;\
         background:#000}}img{{display:block;width:100%;height:100%;object-fit:contain}}\
         </style></head><body><img src=\"{src}\" alt=\"{name} live\"></body></html>\n",
        name = esc(name),
        src = esc(target),
    );
    super::html(&body)
}

/// `?fps=N`: a client's frame rate cap (per camera on `/mux`). The source's rate is the natural
/// upper bound; bounded both ways so the interval is a sane Duration (`?fps=1e-300` would not
/// be one). `Err` is the `400` text.
pub(super) fn fps_cap(query: &str) -> Result<Option<f64>, String> {
    match query_param(query, "fps").as_deref() {
        None => Ok(None),
        Some(v) => match v.parse::<f64>() {
            Ok(f) if (MIN_FPS..=MAX_FPS).contains(&f) => Ok(Some(f)),
            _ => Err(format!(
                "?fps={v} is not a frame rate between {MIN_FPS} and {MAX_FPS}.\n"
            )),
        },
    }
}

/// The head of a never-ending `multipart/x-mixed-replace` response.
pub(super) fn multipart_head(http10: bool, shared: &Shared) -> String {
    let content_type = format!("multipart/x-mixed-replace;boundary={BOUNDARY}");
    stream_head(http10, &content_type, shared)
}

/// The head of a never-ending response of `content_type`.
pub(super) fn stream_head(http10: bool, content_type: &str, shared: &Shared) -> String {
    format!(
        "HTTP/1.{} 200 OK\r\n\
         Content-Type: {content_type}\r\n\
         Cache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n\
         Pragma: no-cache\r\n\
         Expires: 0\r\n\
         X-Accel-Buffering: no\r\n\
         X-Content-Type-Options: nosniff\r\n\
         {cors}\
         Connection: close\r\n\r\n",
        if http10 { 0 } else { 1 },
        cors = shared
            .cfg
            .allow_origin
            .as_ref()
            .map(|o| format!("Access-Control-Allow-Origin: {o}\r\nVary: Origin\r\n"))
            .unwrap_or_default(),
    )
}

pub(super) fn describe_write_error(e: &io::Error, timeout: Duration) -> String {
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
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if !buf.is_empty() && Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let q = "token=ab%2Fc%2B%3D%3D&fps=5&x=a+b&bad=%zz%4&src=door";
        assert_eq!(query_param(q, "token").as_deref(), Some("ab/c+=="));
        assert_eq!(query_param(q, "fps").as_deref(), Some("5"));
        assert_eq!(query_param(q, "x").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=%+1", "a").as_deref(), Some("% 1"));
        assert_eq!(query_param(q, "none"), None);
        assert_eq!(query_param("%74oken=t", "token").as_deref(), Some("t"));
        assert_eq!(query_param("a=%FF", "a").as_deref(), Some("\u{FFFD}"));
    }

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
