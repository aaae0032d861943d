//! Which URL means what: our paths, the per-stream paths of `--stream`, `/mux`, the pages, and
//! the URLs of the servers people migrate from; `--static` files for the rest.

use super::conn::{Body, Request, Response};
use super::{clip, endpoints, html, mux, pages, query_param, send, text, Shared};
use crate::hub::Stream;
use crate::policy::Identity;
use std::sync::Arc;

/// What a URL asks of one stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ask {
    Stream,
    Snapshot,
    Clip,
    Status,
}

/// One stream's endpoint, if `id` may open it (403 if not); a stream connection also takes
/// one of the viewers a user or link may have (429 when they are all in use).
fn serve_one(
    rq: Request,
    ask: Ask,
    stream: &Arc<Stream>,
    (path, query): (&str, &str),
    shared: &Shared,
    id: &Identity,
) {
    if !id.may_open(&stream.name, path) {
        return refuse(rq, &stream.name, shared, id);
    }
    match ask {
        Ask::Stream => {
            let Some(_seat) = shared.seat(id) else {
                return too_many(rq, shared, id);
            };
            endpoints::serve_stream(rq, stream, query, shared)
        }
        Ask::Snapshot => endpoints::serve_snapshot(rq, stream, query, shared),
        Ask::Clip => clip::serve_clip(rq, stream, query, shared),
        Ask::Status => pages::serve_status(rq, shared, Some(stream), id),
    }
}

/// 403 for a stream this identity may not see; the same words whether or not it exists.
pub(super) fn refuse(rq: Request, name: &str, shared: &Shared, id: &Identity) {
    log::debug!("{}: {} may not open '{name}'", rq.peer, id.describe());
    send(
        rq,
        text(
            403,
            &format!("Not allowed: stream '{name}' is not yours to see.\n"),
        ),
        shared,
    )
}

/// 403 for what a signed link does not open (anything but its own path).
fn link_only(rq: Request, shared: &Shared) {
    send(
        rq,
        text(
            403,
            "Not allowed: a signed link opens only the URL it was made for.\n",
        ),
        shared,
    )
}

pub(super) fn too_many(rq: Request, shared: &Shared, id: &Identity) {
    let max = id.viewer_bound().map_or(0, |(_, m)| m);
    let msg = format!(
        "{} already has {max} viewer(s) open, the most it may have at once.\n",
        id.describe()
    );
    send(rq, text(429, &msg).with_header("Retry-After", "5"), shared)
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
///
/// Every way to a stream goes through [`serve_one`], which asks `id` first; the lists (`/`,
/// `/status`, `/metrics`, `/mux`) show only what `id` may see.
pub(super) fn route(rq: Request, path: &str, query: &str, shared: &Shared, id: &Identity) {
    let streams = shared.streams();
    // Which stream a URL without a stream name means: the only one, or the first.
    let first = &streams[0];
    let at = (path, query);
    match (path, query_param(query, "action").as_deref()) {
        ("/", Some("stream")) => return serve_one(rq, Ask::Stream, first, at, shared, id),
        ("/", Some("snapshot")) => return serve_one(rq, Ask::Snapshot, first, at, shared, id),
        _ => {}
    }
    let lists = matches!(path, "/status" | "/metrics" | "/mux" | "/" | "/viewer");
    if lists && matches!(id, Identity::Link { .. }) {
        return link_only(rq, shared);
    }
    match path {
        "/status" => return pages::serve_status(rq, shared, None, id),
        "/metrics" => return pages::serve_metrics(rq, shared, id),
        "/mux" => return mux::serve_mux(rq, query, shared, id),
        "/state" => {
            if !id.may_open(&first.name, path) {
                return refuse(rq, &first.name, shared, id);
            }
            return pages::serve_state(rq, shared, first);
        }
        "/stream" | "/stream.mjpeg" => return serve_one(rq, Ask::Stream, first, at, shared, id),
        "/snapshot" => return serve_one(rq, Ask::Snapshot, first, at, shared, id),
        "/clip" => return serve_one(rq, Ask::Clip, first, at, shared, id),
        "/api/stream.mjpeg" | "/api/frame.jpeg" => {
            let stream = match query_param(query, "src").as_deref() {
                None | Some("") => first.clone(),
                Some(name) => match shared.stream(name) {
                    Ok(s) => s,
                    // Not "no such stream" to someone who may not know which exist.
                    Err(_) if !id.may_list(name) => return refuse(rq, name, shared, id),
                    Err(not_found) => return send(rq, not_found, shared),
                },
            };
            let ask = if path == "/api/stream.mjpeg" {
                Ask::Stream
            } else {
                Ask::Snapshot
            };
            return serve_one(rq, ask, &stream, at, shared, id);
        }
        "/viewer" => return send(rq, html(pages::VIEWER_HTML), shared),
        "/" if shared.cfg.static_dir.is_none() => {
            let page = if shared.named {
                pages::index_html(&shared.visible(id), query_param(query, "token").as_deref())
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
        if let Ok(stream) = shared.stream(name) {
            return match parts.next() {
                _ if matches!(id, Identity::Link { .. }) && !id.may_open(name, path) => {
                    link_only(rq, shared)
                }
                _ if !id.may_list(name) && !id.may_open(name, path) => refuse(rq, name, shared, id),
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
                Some("stream") => serve_one(rq, Ask::Stream, &stream, at, shared, id),
                Some("snapshot") => serve_one(rq, Ask::Snapshot, &stream, at, shared, id),
                Some("clip") => serve_one(rq, Ask::Clip, &stream, at, shared, id),
                Some("status") => serve_one(rq, Ask::Status, &stream, at, shared, id),
                Some(_) => {
                    let msg =
                        format!("Not found. Try /{name}/, /{name}/stream, /{name}/snapshot, /{name}/clip.\n");
                    send(rq, text(404, &msg), shared)
                }
            };
        }
    }
    if matches!(id, Identity::Link { .. }) {
        return link_only(rq, shared);
    }
    if let Some(root) = &shared.cfg.static_dir {
        return serve_static(rq, root, path, shared);
    }
    let msg = if shared.named {
        let list: Vec<_> = shared
            .visible(id)
            .iter()
            .map(|s| format!("/{}/stream", s.name))
            .collect();
        format!(
            "Not found. This relay serves these streams: {}; the list is at /.\n",
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
