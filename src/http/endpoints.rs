#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! The two frame endpoints of one stream: the long-lived `/stream` response (a viewer of one
//! track, see the viewer module) and `/snapshot`.

use super::conn::{Body, Method, Request, Response};
use super::date::{epoch_seconds, http_date};
use super::query::{size_ask, snapshot_pick, stream_ask, Fit, Pick, StreamAsk};
use super::shrink::Refused;
use super::sizing::at_least;
use super::viewer::{Track, Viewer, Who};
use super::wire::{head_only, multipart_head, Layout};
use super::{send, text, Shared};
use crate::feed::SourceState;
use crate::frame::Frame;
use crate::hub::{ClientKind, Stream};
use crate::multipart::{ADVANCE_OPENING, FRAMED_OPENING};
use crate::slot::Next;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `/snapshot` waits for a first frame before answering 503.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// The same for an `--on-demand` stream, whose source may have to start first (a camera
/// command, a connection to a camera).
pub const SNAPSHOT_WAIT_ON_DEMAND: Duration = Duration::from_secs(10);

/// A frame's bytes as a response body, without copying them.
pub(super) struct FrameBody(pub(super) Arc<Frame>);

impl AsRef<[u8]> for FrameBody {
    fn as_ref(&self) -> &[u8] {
        self.0.jpeg()
    }
}

/// The newest real frame, waiting up to [`SNAPSHOT_WAIT`] for one. A NO SIGNAL picture is
/// not a snapshot: a program storing snapshots must not mistake it for the camera's view.
///
/// `fresh` (`?fresh=1`): only a frame completed after `asked` (the request's arrival), for a
/// timelapse that must not get the picture it took last time.
fn newest_real_frame(stream: &Stream, fresh: bool, asked: Instant) -> Option<Arc<Frame>> {
    // A waiting snapshot is someone watching: with --on-demand it starts the source, and the
    // frame it gets must be one the source made for it, not the one from before it slept.
    let _wants = stream.demand.snapshot_waits();
    let cold = stream.demand.on_demand()
        && matches!(
            stream.feed.source_info().state,
            SourceState::Idle | SourceState::Connecting
        );
    let stale = |f: &Frame| fresh && f.arrived_at < asked;
    let cold = cold || stream.feed.slot.latest().is_some_and(|(f, _)| stale(&f));
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
            Next::Frame(frame, _)
                if !crate::nosignal::is_no_signal(frame.jpeg()) && !stale(&frame) =>
            {
                return Some(frame)
            }
            Next::Frame(_, generation) if !left.is_zero() => seen = generation,
            _ => return None,
        }
    }
}

pub(super) fn serve_snapshot(rq: Request, stream: &Stream, query: &str, shared: &Shared) {
    let size = match size_ask(query) {
        Ok(s) => s,
        Err(msg) => return send(rq, text(400, &msg), shared),
    };
    let asked = Instant::now();
    let pick = match snapshot_pick(query) {
        Ok(p) => p,
        Err(msg) => return send(rq, text(400, &msg), shared),
    };
    let info = stream.feed.source_info();
    // An ended source sends nothing more: answer at once, and do not invite a retry.
    let frame = match (pick, info.state) {
        (Pick::Ago(secs), _) => match from_history(stream, secs) {
            Ok(f) => Some(f),
            Err(msg) => return send(rq, text(404, &msg), shared),
        },
        (_, SourceState::Ended) => None,
        (pick, _) => newest_real_frame(stream, pick == Pick::Fresh, asked),
    };
    // ?width=/?height=: the size at or above, made from this very frame (one picture is
    // cheaper made here than by starting a transcoder for it).
    let frame = match (frame, size.fit) {
        (Some(f), Fit::AtLeast { .. }) => {
            let size = crate::jpeg::dimensions(f.jpeg()).map(|d| at_least(size, d));
            match size.filter(|s| s.level > 0) {
                None => Some(f),
                Some(size) => match super::shrink::picture(
                    stream,
                    &f,
                    size,
                    shared.cfg.tier_max_pixels,
                    &shared.one_offs,
                ) {
                    Ok(small) => Some(small),
                    Err(why) => return send(rq, not_made_smaller(why), shared),
                },
            }
        }
        (frame, _) => frame,
    };
    match frame {
        Some(frame) => {
            // When the camera's frame came in: to the microsecond, as an HTTP date, and how
            // long ago (a program storing snapshots can tell a stale one).
            let age = frame.arrived_at.elapsed().as_secs().to_string();
            // A webcam's frame without Huffman tables gets the standard ones: a snapshot is a
            // file every program opens. Any other frame goes out as it is, not copied.
            let body = match crate::jpeg::with_standard_tables(frame.jpeg()) {
                Some(tabled) => Body::Bytes(tabled),
                None => Body::Shared(Arc::new(FrameBody(frame.clone()))),
            };
            let resp = Response::new(200, body)
                .with_header("Content-Type", "image/jpeg")
                .with_header("X-Timestamp", &epoch_seconds(frame.arrived))
                .with_header("Last-Modified", &http_date(frame.arrived))
                .with_header("Age", &age)
                .no_cache();
            send(rq, resp, shared);
        }
        None => {
            let why = info
                .last_error
                .as_ref()
                .map(|(e, _)| {
                    format!(
                        ": {}",
                        e.shown(shared.cfg.status_details || !shared.cfg.policy.get().is_open(),)
                    )
                })
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
                    if stream.feed.waits_for_sender() {
                        "No frame from the source yet (waiting for the sender to connect). Try \
                         again shortly.\n"
                    } else {
                        "No frame from the source yet (connecting). Try again shortly.\n"
                    },
                )
                .with_header("Retry-After", "1"),
                _ => text(
                    503,
                    &format!(
                        "No live picture: the source has sent no frame for {} s{why}. {}; try \
                         again later.\n",
                        stream
                            .feed
                            .last_frame_age()
                            .unwrap_or_else(|| stream.feed.created.elapsed())
                            .as_secs(),
                        if stream.feed.waits_for_sender() {
                            "The relay waits for the sender to connect again"
                        } else {
                            "The relay keeps reconnecting"
                        }
                    ),
                )
                .with_header("Retry-After", "5"),
            };
            send(rq, resp, shared);
        }
    }
}

/// `?ago=SECONDS`: the frame of the history nearest to that long ago, or the `404` text that
/// says how far back the history reaches.
fn from_history(stream: &Stream, secs: f64) -> Result<Arc<Frame>, String> {
    let name = &stream.name;
    let Some(history) = stream.feed.history.get() else {
        return Err(format!(
            "Stream '{name}' keeps no history (--history 0): only the newest frame.\n"
        ));
    };
    let Some((oldest, _)) = history.span() else {
        return Err(format!(
            "Stream '{name}' has no frame in its history yet.\n"
        ));
    };
    let reach = oldest.arrived_at.elapsed().as_secs_f64();
    // Within a frame interval or so of the oldest still counts as in reach.
    if secs > reach + 0.25 {
        return Err(format!(
            "The history of '{name}' reaches back {reach:.1} s (to X-Timestamp {}); ?ago={secs} \
             is before it. It keeps --history {} s, at most --history-bytes {}.\n",
            epoch_seconds(oldest.arrived),
            history.limits().max_age.as_secs_f64(),
            history.limits().max_bytes
        ));
    }
    let at = Instant::now()
        .checked_sub(Duration::from_secs_f64(secs))
        .unwrap_or(oldest.arrived_at);
    history
        .nearest(at)
        .ok_or_else(|| format!("Stream '{name}' has no frame in its history yet.\n"))
}

/// The long-lived `/stream` response: a [`Viewer`] of one track. Runs until the client goes
/// away, a frame cannot be delivered within `--send-timeout`, or the server shuts down.
pub(super) fn serve_stream(rq: Request, stream: &Stream, query: &str, shared: &Shared) {
    let ask = match stream_ask(query) {
        Ok(a) => a,
        Err(msg) => return send(rq, text(400, &msg), shared),
    };
    if !ask.raw && is_document_navigation(&rq) {
        let page = stream_page(&stream.name, &rq.target);
        return send(rq, page, shared);
    }
    let StreamAsk {
        fps_cap,
        size,
        rewind,
        advance,
        ..
    } = ask;
    // ?rewind=: the history's last seconds first, taken now (shared frames, no copies).
    let replay = match rewind {
        None => Vec::new(),
        Some(secs) => match stream.feed.history.get() {
            // By this relay's clock: the last seconds, whatever the camera's clock says.
            Some(h) => match Instant::now().checked_sub(Duration::from_secs_f64(secs)) {
                Some(from) => h.since(from),
                None => h.span().map_or(Vec::new(), |(o, _)| h.since(o.arrived_at)),
            },
            None => {
                let msg = format!(
                    "Stream '{}' keeps no history (--history 0): nothing to rewind.\n",
                    stream.name
                );
                return send(rq, text(404, &msg), shared);
            }
        },
    };
    let http10 = rq.minor_version == 0;
    if rq.method == Method::Head {
        return head_only(rq, multipart_head(http10, shared).as_bytes(), shared);
    }
    let user_agent = rq.header("User-Agent").unwrap_or_default().to_string();
    let layout = Layout::choose(&user_agent, advance);
    let addr = rq.peer.clone();
    let who = Who {
        addr: &addr,
        ip: rq.ip,
        user_agent: &user_agent,
        kind: match layout {
            Layout::Advance => ClientKind::Advance,
            Layout::Framed => ClientKind::Framed,
        },
        fps_cap,
    };
    let mut track = Track::new(stream, layout, Vec::new(), &who);
    if let Err(msg) = track.ask_size(size, shared.cfg.tier_max_pixels) {
        return send(rq, text(503, &msg), shared);
    }
    // A response that never ends: written by hand on the connection, never chunked or buffered.
    let what = format!("stream '{}'", stream.name);
    let mut viewer = Viewer::new(rq.into_conn(), addr, what, vec![track], fps_cap, shared);
    let opening = match layout {
        Layout::Framed => FRAMED_OPENING,
        Layout::Advance => ADVANCE_OPENING,
    };
    if viewer.open(multipart_head(http10, shared).as_bytes(), opening) && viewer.replay(&replay) {
        let cap_note = fps_cap
            .map(|f| format!(", capped at {f} fps"))
            .unwrap_or_default();
        let replayed = match replay.len() {
            0 => String::new(),
            n => format!(", {n} frames replayed first"),
        };
        viewer.run(&format!("{} layout{cap_note}{replayed}", layout.as_str()));
    }
}

/// The `503` of a sized snapshot that could not be made.
fn not_made_smaller(why: Refused) -> Response {
    match why {
        Refused::Busy => text(
            503,
            "Too many smaller snapshots are being made; try again shortly.\n",
        )
        .with_header("Retry-After", "1"),
        Refused::Shrink(e) => text(
            503,
            &format!("The newest frame could not be made smaller: {e}.\n"),
        ),
    }
}

/// Whether the request opens the stream URL as a page (someone typed or tapped the link)
/// rather than as an image or a program's stream: `Sec-Fetch-Dest: document`, or, from a
/// browser too old to send it, an `Accept` that asks for HTML. `?page=0` never.
fn is_document_navigation(rq: &Request) -> bool {
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
