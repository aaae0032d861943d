//! The informational endpoints: `/status` (ours), `/state` (ustreamer's shape), `/metrics`
//! (Prometheus), and the HTML pages.

use super::conn::{Request, Response};
use super::{send, Shared};
use crate::hub::{ClientKind, Stream};
use serde_json::json;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

pub(super) const VIEWER_HTML: &str = include_str!("viewer.html");

pub(super) const STATUS_HTML: &str = include_str!("status.html");

/// `/status`: JSON for programs, as always; a page for a person whose browser opens it
/// (`Accept` asks for HTML, as a navigation's does and `fetch()`'s does not).
/// `?format=json` or `?format=html` chooses outright.
pub(super) fn serve_status(
    rq: Request,
    shared: &Shared,
    only: Option<&Arc<Stream>>,
    id: &crate::policy::Identity,
) {
    let query = rq.target.split_once('?').map_or("", |(_, q)| q);
    let page = match super::query_param(query, "format").as_deref() {
        Some("json") => false,
        Some("html") => true,
        _ => rq.header("Accept").is_some_and(|a| a.contains("text/html")),
    };
    if page {
        return send(rq, super::html(STATUS_HTML), shared);
    }
    let with_clients = super::query_param(query, "clients").as_deref() != Some("0");
    let body = status_json(shared, only, with_clients, id).to_string();
    let resp = Response::bytes(200, body)
        .with_header("Content-Type", "application/json")
        .no_cache();
    send(rq, resp, shared);
}

pub(super) fn serve_metrics(rq: Request, shared: &Shared, id: &crate::policy::Identity) {
    let body = crate::metrics::render(
        &shared.visible(id),
        shared.started.elapsed(),
        &shared.refusals.counts(),
    );
    let resp = Response::bytes(200, body)
        .with_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .no_cache();
    send(rq, resp, shared);
}

/// ustreamer's `/state`, for tools that poll it (the first stream).
pub(super) fn serve_state(rq: Request, shared: &Shared, s: &Stream) {
    let (fps, _) = s.feed.input_rate();
    let (w, h) = s.feed.last_dimensions().unwrap_or((0, 0));
    let clients: serde_json::Map<String, serde_json::Value> = s
        .clients
        .snapshot()
        .iter()
        .map(|c| {
            let secs = c.connected_at.elapsed().as_secs_f64().max(0.001);
            let rate = c.frames_sent.load(SeqCst) as f64 / secs;
            (
                c.id.to_string(),
                json!({
                    "fps": rate.round(),
                    "advance_headers": c.kind == ClientKind::Advance,
                    "extra_headers": c.kind == ClientKind::Framed,
                    "dual_final_frames": false,
                    "zero_data": false,
                }),
            )
        })
        .collect();
    let body = json!({
        "ok": true,
        "result": {
            "source": {
                "resolution": {"width": w, "height": h},
                "online": s.feed.source_info().state == crate::feed::SourceState::Live,
                "captured_fps": fps.round(),
            },
            "stream": {
                "queued_fps": fps.round(),
                "clients": clients.len(),
                "clients_stat": clients,
            },
        },
    });
    let resp = Response::bytes(200, body.to_string())
        .with_header("Content-Type", "application/json")
        .no_cache();
    send(rq, resp, shared);
}

/// Whether `/status` may show what only the operator should see: each source's spec and each
/// viewer's address and User-Agent. A logged-in caller sees them (of the streams they may
/// see); without a login anyone who can open the stream can read `/status`, so only
/// `--status-details` shows them.
pub(super) fn details(shared: &Shared, id: &crate::policy::Identity) -> bool {
    shared.cfg.status_details || id.logged_in()
}

/// `with_clients`: the per-viewer list (`?clients=0` leaves it out: what the pages poll every
/// second or two, so M open dashboards cost M × streams, not M × streams × viewers).
pub(super) fn status_json(
    shared: &Shared,
    only: Option<&Arc<Stream>>,
    with_clients: bool,
    id: &crate::policy::Identity,
) -> serde_json::Value {
    let details = details(shared, id);
    let streams: Vec<_> = shared
        .visible(id)
        .iter()
        .filter(|s| only.is_none_or(|o| Arc::ptr_eq(o, s)))
        .map(|s| {
            let path = if shared.named {
                format!("/{}/stream", s.name)
            } else {
                "/stream".to_string()
            };
            let mut v = json!({
                "name": s.name,
                "path": path,
                "source": source_json(s, details),
                "clients_connected": s.clients.len(),
                "out": {
                    "frames": s.out.frames_out.load(SeqCst),
                    "bytes": s.out.bytes_out.load(SeqCst),
                    "frames_skipped": s.out.frames_skipped.load(SeqCst),
                    "repeats": s.out.repeats.load(SeqCst),
                    "clients_served": s.out.clients_total.load(SeqCst),
                },
                "no_signal": s.feed.shows_no_signal(),
                // The last seconds kept in memory (--history): what /snapshot?ago= and /clip reach.
                "history": s.feed.history.get().map(|h| {
                    let held = h.held();
                    json!({
                        "frames": held.frames,
                        "bytes": held.bytes,
                        "seconds": round3(held.seconds),
                        "max_seconds": h.limits().max_age.as_secs_f64(),
                        "max_bytes": h.limits().max_bytes,
                    })
                }),
                "sizes": sizes_json(s),
            });
            if with_clients {
                let clients = s.clients.snapshot();
                v["clients"] = clients.iter().map(|c| client_json(c, details)).collect();
            }
            v
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": round3(shared.started.elapsed().as_secs_f64()),
        // Connections turned away, by reason (the log says each once, then summarises).
        "refused": shared.refusals.counts().iter().map(|(r, n)| (r.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "streams": streams,
    })
}

/// One viewer in `/status`: its address and User-Agent only with `details`.
fn client_json(c: &crate::hub::ClientInfo, details: bool) -> serde_json::Value {
    json!({
        "id": c.id,
        "address": details.then_some(&c.addr),
        "user_agent": details.then_some(&c.user_agent),
        "layout": c.kind.as_str(),
        "fps_cap": c.fps_cap,
        "connected_s": round3(c.connected_at.elapsed().as_secs_f64()),
        "frames_sent": c.frames_sent.load(SeqCst),
        "frames_skipped": c.frames_skipped.load(SeqCst),
        "repeats": c.repeats.load(SeqCst),
        "bytes_sent": c.bytes_sent.load(SeqCst),
        "size": crate::tiers::fraction(c.level.load(SeqCst)),
        "size_auto": c.auto.load(SeqCst),
    })
}

/// A stream's source in `/status`: its state, counters, fallback chain and on-demand state;
/// `details`: the specs in full ([`details`]).
fn source_json(s: &Stream, details: bool) -> serde_json::Value {
    let info = s.feed.source_info();
    let (fps, bps) = s.feed.input_rate();
    let src = &s.feed.stats;
    let connections = src.connections.load(SeqCst);
    json!({
        "spec": s.feed.spec.shown(details),
        "state": info.state.as_str(),
        // Started on demand for a viewer, no frame yet: the STARTING picture.
        "starting": s.feed.starting.load(SeqCst),
        "address": info.peer,
        "format": info.format,
        "state_for_s": round3(info.since.elapsed().as_secs_f64()),
        "last_error": info.last_error.as_ref().map(|(e, _)| e.shown(details)),
        "last_error_age_s": info
            .last_error
            .as_ref()
            .map(|(_, t)| round3(t.elapsed().as_secs_f64())),
        "connections": connections,
        "reconnects": connections.saturating_sub(1),
        "frames_in": src.frames_in.load(SeqCst),
        "bytes_in": src.bytes_in.load(SeqCst),
        "fps": round3(fps),
        "bitrate_bps": bps.round(),
        "last_frame_age_s": s.feed.last_frame_age().map(|a| round3(a.as_secs_f64())),
        "dropped": {
            "not_jpeg": src.not_jpeg.load(SeqCst),
            "oversized": src.oversized.load(SeqCst),
            "header_too_long": src.header_too_long.load(SeqCst),
        },
        "garbage_bytes": src.garbage_bytes.load(SeqCst),
        "truncated": src.truncated.load(SeqCst),
        "boundary_changes": src.boundary_changes.load(SeqCst),
        "no_signal_parts": src.no_signal_parts.load(SeqCst),
        // --warmup: frames discarded at the starts of the source.
        "warmup_discarded": src.warmup_discarded.load(SeqCst),
        "failover": s.chain.get().map(|f| failover_json(f, details)),
        "on_demand": s.demand.linger.get().map(|l| json!({
            "linger_s": l.as_secs_f64(),
            "starts": s.feed.starts.load(SeqCst),
        })),
    })
}

/// The smaller sizes of a stream running now, each with its transcoder's work.
fn sizes_json(s: &Stream) -> serde_json::Value {
    let sizes: Vec<_> = s
        .tiers
        .snapshot()
        .iter()
        .map(|t| {
            let dims = t.feed.last_dimensions();
            json!({
                "size": t.fraction(),
                "width": dims.map(|d| d.0),
                "height": dims.map(|d| d.1),
                "quality": t.size.quality,
                "viewers": t.users(),
                "frames": t.frames.load(SeqCst),
                "failed": t.failed.load(SeqCst),
                "skipped": t.skipped.load(SeqCst),
                "decoded": t.decoded.load(SeqCst),
                "cpu_s": round3(t.cpu_ns.load(SeqCst) as f64 / 1e9),
                "running_s": round3(t.started.elapsed().as_secs_f64()),
            })
        })
        .collect();
    sizes.into()
}

/// A chained stream's sources (`--fallback`): which one feeds it now and why.
fn failover_json(f: &crate::hub::Chain, details: bool) -> serde_json::Value {
    let current = f.current.load();
    let chain: Vec<_> = f
        .members
        .iter()
        .map(|m| {
            let info = m.source_info();
            json!({
                "spec": m.spec.shown(details),
                "state": info.state.as_str(),
                "address": info.peer,
                "frames_in": m.stats.frames_in.load(SeqCst),
                "last_frame_age_s": m.last_frame_age().map(|a| round3(a.as_secs_f64())),
                "last_error": info.last_error.as_ref().map(|(e, _)| e.shown(details)),
            })
        })
        .collect();
    json!({
        "current": current.and_then(|i| f.members.get(i)).map(|m| m.spec.shown(details)),
        "current_index": current,
        "switches": f.switches.load(SeqCst),
        // The reason names sources by their specs: each shown as above.
        "reason": f.members.iter().fold(f.reason.lock().clone(), |r, m| r.replace(&m.spec.full, m.spec.shown(details))),
        "chain": chain,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The stream list for `--stream` setups: every camera live in its tile, all through one
/// `/mux` connection (see `index.html` for the reader, and the `mux` module for why). The
/// names are letters, digits, `-` and `_` (checked at start-up): safe in HTML, URLs and JSON.
///
/// A `?token=` the page was opened with is carried into every URL it makes, so a relay with
/// `--token` alone works from its own index page.
pub(super) fn index_html(streams: &[Arc<Stream>], token: Option<&str>) -> String {
    // Percent-encoded: only unreserved characters are left, so it is also safe in HTML.
    let q = token.map_or(String::new(), |t| format!("?token={}", url_encode(t)));
    let mut cards = String::new();
    for s in streams {
        let n = &s.name;
        cards.push_str(&format!(
            "<a class=\"card\" href=\"/{n}/{q}\" data-name=\"{n}\">\
             <img src=\"\" data-src=\"/{n}/snapshot{q}\" alt=\"{n}\"><canvas></canvas>\
             <span><b>{n}</b> <i class=\"state\">connecting…</i></span></a>\n"
        ));
    }
    INDEX_HTML
        .replace("{{cards}}", &cards)
        .replace("{{status}}", &format!("/status{q}"))
        .replace("{{token}}", &q)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(super) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const INDEX_HTML: &str = include_str!("index.html");
