//! `/mux?streams=a,b,c`: several cameras on one connection.
//!
//! Browsers open at most six HTTP/1.1 connections to a host, and every live MJPEG `<img>`
//! holds one for good, so a page of more than six cameras stalls. `/mux` carries any number of
//! streams in one `multipart/x-mixed-replace` response whose parts each name their camera
//! (`X-Stream: NAME`) and carry `Content-Length`; the index page reads it with `fetch()` and
//! draws each part in its camera's tile. With `?framing=octet` the same bytes go out as
//! `application/octet-stream`: WebKit's `fetch()` does not stream a multipart body.
//!
//! A mux connection is a [`Viewer`] with one track per camera, the same loop as `/stream`:
//! each time the connection can take a part it sends the *newest* frame of the next camera
//! (round-robin) that has one it has not sent. Nothing is queued: a slow client skips frames
//! of every camera, and the in-flight bound applies to the whole connection. `?fps=N` caps each
//! camera. When no camera has anything new for [`REPEAT_AFTER`](super::REPEAT_AFTER), the part
//! sent longest ago is sent again, so a reader's "no part for a few seconds" watchdog means
//! the connection, not a still scene. The viewer sleeps on a subscription to the cameras it
//! carries: a frame of a camera it does not carry does not wake it.
//!
//! The client is registered with every camera it carries, so `/status` and `/metrics` count a
//! mux viewer as a viewer of each.

use super::conn::{Method, Request};
use super::query::{fps_cap, query_param, size_ask, Fit};
use super::respond::stream_head;
use super::viewer::{Track, Viewer, Who};
use super::wire::{head_only, multipart_head, Layout};
use super::{send, text, Shared};
use crate::hub::{ClientKind, Stream};
use crate::multipart::{BOUNDARY, FRAMED_OPENING};
use std::sync::Arc;

pub(super) fn serve_mux(rq: Request, query: &str, shared: &Shared, id: &crate::policy::Identity) {
    let fps_cap = match fps_cap(query) {
        Ok(f) => f,
        Err(msg) => return send(rq, text(400, &msg), shared),
    };
    let wanted = query_param(query, "streams").unwrap_or_else(|| "*".into());
    let mut streams: Vec<Arc<Stream>> = Vec::new();
    for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "*" {
            // Every stream this viewer may see.
            streams.extend(shared.visible(id));
            continue;
        }
        // A camera not allowed is refused, not silently dropped: the page asked for it.
        if !id.may_list(name) {
            return super::routes::refuse(rq, name, shared, id);
        }
        match shared.stream(name) {
            Ok(s) => streams.push(s),
            Err(not_found) => return send(rq, not_found, shared),
        }
    }
    // Each camera once, in the order asked.
    let mut seen = std::collections::BTreeSet::new();
    streams.retain(|s| seen.insert(s.name.clone()));
    if streams.is_empty() {
        return send(rq, text(400, "?streams= names no stream.\n"), shared);
    }
    let Some(_seat) = shared.seat(id) else {
        return super::routes::too_many(rq, shared, id);
    };
    // A dashboard's tiles: ?width=/?height= size every camera for a tile (each from its own
    // picture size); ?size=auto is for one picture on one link, not a wall of them.
    let size = match size_ask(query) {
        Ok(s) if s.fit == Fit::Auto => {
            let msg = "/mux takes ?width= and ?height= (the tile's size), not ?size=auto.\n";
            return send(rq, text(400, msg), shared);
        }
        Ok(s) => s,
        Err(msg) => return send(rq, text(400, &msg), shared),
    };
    let user_agent = rq.header("User-Agent").unwrap_or_default().to_string();
    let (http10, addr) = (rq.minor_version == 0, rq.peer.clone());
    // `?framing=octet`: the same bytes as `application/octet-stream`, for `fetch()` in WebKit
    // (Safari, iPad, iPhone), which refuses to stream a multipart body to a script ("Load
    // failed") but streams any other type. The boundary is in `X-Mux-Boundary` and, as always,
    // on the first line of the body.
    let head = match query_param(query, "framing").as_deref() {
        Some("octet") => stream_head(
            http10,
            "application/octet-stream",
            &[("X-Mux-Boundary", BOUNDARY)],
            shared,
        ),
        _ => multipart_head(http10, shared),
    };
    if rq.method == Method::Head {
        return head_only(rq, head.as_bytes(), shared);
    }
    // Registered with every camera before the head goes out, as on /stream.
    let mut tracks: Vec<Track> = Vec::with_capacity(streams.len());
    for s in &streams {
        let prefix = format!("X-Stream: {}\r\n", s.name).into_bytes();
        let who = Who {
            addr: &addr,
            ip: rq.ip,
            user_agent: &user_agent,
            kind: ClientKind::Mux,
            fps_cap,
        };
        let mut track = Track::new(s, Layout::Framed, prefix, &who);
        if let Err(msg) = track.ask_size(size, shared.cfg.tier_max_pixels) {
            return send(rq, text(503, &msg), shared);
        }
        tracks.push(track);
    }
    let n = tracks.len();
    let mut viewer = Viewer::new(rq.into_conn(), addr, "/mux".into(), tracks, fps_cap, shared);
    if viewer.open(head.as_bytes(), FRAMED_OPENING) {
        viewer.run(&format!("{n} stream(s)"));
    }
}
