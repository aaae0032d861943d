//! `/mux?streams=a,b,c`: several cameras on one connection.
//!
//! Browsers open at most six HTTP/1.1 connections to a host, and every live MJPEG `<img>`
//! holds one for good, so a page of more than six cameras stalls. `/mux` carries any number of
//! streams in one `multipart/x-mixed-replace` response whose parts each name their camera
//! (`X-Stream: NAME`) and carry `Content-Length`; the index page reads it with `fetch()` and
//! draws each part in its camera's tile. With `?framing=octet` the same bytes go out as
//! `application/octet-stream`: WebKit's `fetch()` does not stream a multipart body.
//!
//! Liveness holds per camera, as on `/stream`: the writer keeps, per camera, the generation it
//! last sent, and each time the connection can take a part it sends the *newest* frame of the
//! next camera (round-robin) that has one it has not sent. Nothing is queued: a slow client
//! skips frames of every camera, and the in-flight bound of `/stream` applies to the whole
//! connection. `?fps=N` caps each camera. When no camera has anything new for
//! [`REPEAT_AFTER`](super::REPEAT_AFTER), the part sent longest ago is sent again, so a reader's
//! "no part for a few seconds" watchdog means the connection, not a still scene.
//!
//! The client is registered with every camera it carries, so `/status` and `/metrics` count a
//! mux viewer as a viewer of each.

use super::endpoints::{describe_write_error, fps_cap, multipart_head, query_param, stream_head};
use super::inflight::{Drained, InFlight};
use super::server::{Method, Request};
use super::{send, text, write_all_by, Shared, REPEAT_AFTER};
use crate::frame::Frame;
use crate::hub::{Stream, ANY_FRAME};
use crate::multipart::{BOUNDARY, FRAMED_OPENING};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One camera of a mux connection.
struct Camera<'a> {
    stream: &'a Stream,
    /// `X-Stream: NAME\r\n`, written before each of its parts.
    header: Vec<u8>,
    /// Generation last sent (0: none yet).
    sent: u64,
    /// When its last *new* frame went out: the `?fps` cap counts these.
    last_at: Option<Instant>,
    /// When any part of it went out, repeats included: the oldest is repeated first.
    written_at: Option<Instant>,
    last: Option<Arc<Frame>>,
}

pub(super) fn serve_mux(rq: Request, query: &str, shared: &Shared) {
    let fps_cap = match fps_cap(query) {
        Ok(f) => f,
        Err(msg) => return send(rq, text(400, &msg), shared),
    };
    let wanted = query_param(query, "streams").unwrap_or_else(|| "*".into());
    let mut streams: Vec<&Arc<Stream>> = Vec::new();
    for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "*" {
            streams.extend(shared.streams.iter());
            continue;
        }
        match shared.streams.iter().find(|s| s.name == name) {
            Some(s) => streams.push(s),
            None => {
                let msg = format!("No stream named '{name}'.\n");
                return send(rq, text(404, &msg), shared);
            }
        }
    }
    // Each camera once, in the order asked.
    let mut seen = std::collections::BTreeSet::new();
    streams.retain(|s| seen.insert(s.name.clone()));
    if streams.is_empty() {
        return send(rq, text(400, "?streams= names no stream.\n"), shared);
    }
    let min_interval = fps_cap.map(|f| Duration::from_secs_f64(1.0 / f));
    // As on /stream: a still picture is repeated after REPEAT_AFTER, never more often than
    // the cap allows.
    let repeat_after = min_interval.map_or(REPEAT_AFTER, |i| i.max(REPEAT_AFTER));
    let user_agent = rq.header("User-Agent").unwrap_or_default().to_string();
    let (http10, is_head, addr) = (
        rq.minor_version == 0,
        rq.method == Method::Head,
        rq.peer.clone(),
    );
    let mut w = rq.into_conn();
    // Registered with every camera before the head goes out, as on /stream (removed when these
    // guards drop with this thread).
    let regs: Vec<_> = streams
        .iter()
        .map(|s| {
            s.out.clients_total.fetch_add(1, SeqCst);
            s.clients
                .register(addr.clone(), user_agent.clone(), "mux", fps_cap)
        })
        .collect();
    let deadline = Instant::now() + shared.cfg.send_timeout;
    // `?framing=octet`: the same bytes as `application/octet-stream`, for `fetch()` in WebKit
    // (Safari, iPad, iPhone), which refuses to stream a multipart body to a script ("Load
    // failed") but streams any other type. The boundary is in `X-Mux-Boundary` and, as always,
    // on the first line of the body.
    let head = match query_param(query, "framing").as_deref() {
        Some("octet") => stream_head(
            http10,
            &format!("application/octet-stream\r\nX-Mux-Boundary: {BOUNDARY}"),
            shared,
        ),
        _ => multipart_head(http10, shared),
    };
    if write_all_by(&mut w, head.as_bytes(), deadline).is_err() || is_head {
        return;
    }
    if write_all_by(&mut w, FRAMED_OPENING, deadline).is_err() {
        return;
    }
    let mut cams: Vec<Camera> = streams
        .iter()
        .map(|s| Camera {
            stream: s,
            header: format!("X-Stream: {}\r\n", s.name).into_bytes(),
            sent: 0,
            last_at: None,
            written_at: None,
            last: None,
        })
        .collect();
    log::info!(
        "viewer {addr} connected to /mux with {} stream(s)",
        cams.len()
    );
    let mut inflight = match w.tcp_fd() {
        Some(fd) if shared.cfg.inflight_bound => InFlight::new(fd),
        _ => None,
    };
    let mut next = 0; // round-robin position
    let mut epoch = ANY_FRAME.epoch();
    let mut last_write = Instant::now();
    let end = loop {
        // The next camera, from the round-robin position on, with a frame it has not sent and
        // (with ?fps) whose interval has passed.
        let now = Instant::now();
        let due = |c: &Camera| {
            min_interval.is_none_or(|i| c.last_at.is_none_or(|t| now.duration_since(t) >= i))
        };
        let pick = (0..cams.len()).map(|k| (next + k) % cams.len()).find(|&i| {
            let c = &cams[i];
            due(c) && c.stream.slot.latest().is_some_and(|(_, g)| g > c.sent)
        });
        let Some(i) = pick else {
            if last_write.elapsed() >= repeat_after {
                // Nothing new anywhere: send the part sent longest ago again (keep-alive).
                // A repeat is not a new frame: the camera's ?fps timer stays (resetting it
                // froze capped cameras for good, below 1 fps), but its bytes count.
                let oldest = (0..cams.len())
                    .filter(|&i| cams[i].last.is_some())
                    .min_by_key(|&i| cams[i].written_at);
                if let Some(i) = oldest {
                    let frame = cams[i].last.clone().expect("filtered on last");
                    if let Err(e) = write_part(&mut w, &cams[i], &frame, shared) {
                        break describe_write_error(&e, shared.cfg.send_timeout);
                    }
                    last_write = Instant::now();
                    if let Some(bound) = &mut inflight {
                        bound.wrote(cams[i].header.len() + frame.wire.framed().len());
                    }
                    cams[i].written_at = Some(last_write);
                    let bytes = (cams[i].header.len() + frame.wire.framed().len()) as u64;
                    let (info, out) = (&regs[i].info, &cams[i].stream.out);
                    info.repeats.fetch_add(1, SeqCst);
                    info.bytes_sent.fetch_add(bytes, SeqCst);
                    out.repeats.fetch_add(1, SeqCst);
                    out.bytes_out.fetch_add(bytes, SeqCst);
                    continue;
                }
            }
            // A capped dashboard may write nothing for seconds: look at the socket while it
            // waits (an uncapped one writes often and notices a closed peer by that).
            if min_interval.is_some() && w_gone(&w) {
                break "client closed".to_string();
            }
            // Sleep until any stream publishes, a capped camera becomes due, or a repeat is.
            let wait = min_interval
                .unwrap_or(REPEAT_AFTER)
                .min(REPEAT_AFTER)
                .min(Duration::from_millis(250));
            match ANY_FRAME.wait(epoch, wait) {
                Some(e) => epoch = e,
                None => break "server shutting down".to_string(),
            }
            continue;
        };
        next = (i + 1) % cams.len();
        // The link's queue drains before the part is chosen, so it is the newest then.
        if let Some(bound) = &mut inflight {
            match bound.wait(
                &cams[i].stream.slot,
                Instant::now() + shared.cfg.send_timeout,
            ) {
                Drained::Ready { .. } => {}
                Drained::Closed => break "server shutting down".to_string(),
                Drained::Gone => break "client closed".to_string(),
                Drained::Stalled => {
                    break format!(
                        "its unacknowledged data did not drain within --send-timeout ({:.1} s)",
                        shared.cfg.send_timeout.as_secs_f64()
                    )
                }
            }
        }
        let Some((frame, generation)) = cams[i].stream.slot.latest() else {
            continue;
        };
        if let Err(e) = write_part(&mut w, &cams[i], &frame, shared) {
            break describe_write_error(&e, shared.cfg.send_timeout);
        }
        last_write = Instant::now();
        if let Some(bound) = &mut inflight {
            bound.wrote(cams[i].header.len() + frame.wire.framed().len());
        }
        let cam = &mut cams[i];
        let (info, out) = (&regs[i].info, &cam.stream.out);
        if cam.sent > 0 && generation > cam.sent + 1 {
            let skipped = generation - cam.sent - 1;
            info.frames_skipped.fetch_add(skipped, SeqCst);
            out.frames_skipped.fetch_add(skipped, SeqCst);
        }
        let bytes = (cam.header.len() + frame.wire.framed().len()) as u64;
        info.frames_sent.fetch_add(1, SeqCst);
        info.bytes_sent.fetch_add(bytes, SeqCst);
        out.frames_out.fetch_add(1, SeqCst);
        out.bytes_out.fetch_add(bytes, SeqCst);
        out.observe_delay(last_write.duration_since(frame.arrived_at));
        cam.sent = generation;
        cam.last_at = Some(last_write);
        cam.written_at = Some(last_write);
        cam.last = Some(frame);
    };
    let sent: u64 = regs.iter().map(|r| r.info.frames_sent.load(SeqCst)).sum();
    log::info!(
        "viewer {addr} left /mux after {:.1} s: {sent} parts sent ({end})",
        regs[0].info.connected_at.elapsed().as_secs_f64(),
    );
}

/// Whether the viewer is gone (checked while nothing is due, so a `?fps`-capped dashboard
/// that closed frees its thread now, not at its next part).
fn w_gone(w: &super::server::Conn) -> bool {
    super::inflight::peer_gone(w.as_raw_fd())
}

/// One part: the camera's name, then the frame's framed wire form (headers with
/// `Content-Length`, the JPEG, the next boundary line).
fn write_part(
    w: &mut dyn Write,
    cam: &Camera,
    frame: &Frame,
    shared: &Shared,
) -> std::io::Result<()> {
    let deadline = Instant::now() + shared.cfg.send_timeout;
    write_all_by(w, &cam.header, deadline)?;
    write_all_by(w, frame.wire.framed(), deadline)
}
