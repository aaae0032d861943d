//! Which URL means what: our paths, the per-stream paths of `--stream`, `/mux`, the pages, and
//! the URLs of the servers people migrate from; `--static` files for the rest.

use super::conn::{Body, Request, Response};
use super::{clip, endpoints, html, mux, pages, query_param, send, text, Shared};
use crate::hub::Stream;
use std::sync::Arc;

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
pub(super) fn route(rq: Request, path: &str, query: &str, shared: &Shared) {
    match (path, query_param(query, "action").as_deref()) {
        ("/", Some("stream")) => return endpoints::serve_stream(rq, first(shared), query, shared),
        ("/", Some("snapshot")) => {
            return endpoints::serve_snapshot(rq, first(shared), query, shared)
        }
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
        "/snapshot" => return endpoints::serve_snapshot(rq, first(shared), query, shared),
        "/clip" => return clip::serve_clip(rq, first(shared), query, shared),
        "/api/stream.mjpeg" | "/api/frame.jpeg" => {
            let stream = match query_param(query, "src").as_deref() {
                None | Some("") => first(shared),
                Some(name) => match shared.stream(name) {
                    Ok(s) => s,
                    Err(not_found) => return send(rq, not_found, shared),
                },
            };
            return if path == "/api/stream.mjpeg" {
                endpoints::serve_stream(rq, stream, query, shared)
            } else {
                endpoints::serve_snapshot(rq, stream, query, shared)
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
        if let Ok(stream) = shared.stream(name) {
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
                Some("snapshot") => endpoints::serve_snapshot(rq, stream, query, shared),
                Some("clip") => clip::serve_clip(rq, stream, query, shared),
                Some("status") => pages::serve_status(rq, shared, Some(stream)),
                Some(_) => {
                    let msg =
                        format!("Not found. Try /{name}/, /{name}/stream, /{name}/snapshot, /{name}/clip.\n");
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
