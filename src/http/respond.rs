//! How every response leaves: CORS and `nosniff` on all of them, `no-cache` where a picture
//! or a state must never be stale, and the small text and HTML bodies.

use super::conn::{Body, Request, Response};
use super::Shared;

/// The headers every routed response carries that depend on the configuration: CORS when
/// `--allow-origin` is set. (Those that never depend on it, `nosniff`, are written by
/// [`Response::head`] itself, for the connection layer's refusals too.) No
/// `Access-Control-Allow-Credentials`: another origin's page may read what the relay serves
/// without credentials (with `?token=` in the URL), never with the browser's stored login.
fn common(resp: Response, allow_origin: Option<&str>) -> Response {
    match allow_origin {
        Some(origin) => resp
            .with_header("Access-Control-Allow-Origin", origin)
            .with_header("Vary", "Origin"),
        None => resp,
    }
}

/// Sends `resp` with the common headers and closes the connection.
pub(super) fn send(rq: Request, resp: Response, shared: &Shared) {
    let resp = common(resp, shared.cfg.allow_origin.as_deref());
    let status = resp.status();
    if let Err(e) = rq.respond(resp) {
        log::debug!("response {status} not delivered: {e}");
    }
}

/// The head of a never-ending frame response (`/stream`, `/mux`) of `content_type`, with
/// `extra` headers of its own (`X-Mux-Boundary`): the common headers, `no-cache`, and
/// `X-Accel-Buffering: no` (nginx passes each part on at once instead of buffering), written
/// by the same [`Response::head`] as every other response.
pub(super) fn stream_head(
    http10: bool,
    content_type: &str,
    extra: &[(&str, &str)],
    shared: &Shared,
) -> String {
    let mut resp = Response::new(200, Body::Endless)
        .with_header("Content-Type", content_type)
        .no_cache()
        .with_header("X-Accel-Buffering", "no");
    for (name, value) in extra {
        resp = resp.with_header(name, value);
    }
    common(resp, shared.cfg.allow_origin.as_deref()).head(if http10 { 0 } else { 1 })
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

    /// A stream's head and a plain response's are written by the same function with the same
    /// common headers: what one carries for security, the other does too.
    #[test]
    fn stream_heads_and_plain_heads_share_their_common_headers() {
        let origin = Some("https://dash.example");
        let plain = common(text(404, "no"), origin).head(1);
        let stream = common(
            Response::new(200, Body::Endless).with_header("Content-Type", "x/y"),
            origin,
        )
        .head(0);
        for h in [
            "X-Content-Type-Options: nosniff\r\n",
            "Access-Control-Allow-Origin: https://dash.example\r\n",
            "Vary: Origin\r\n",
            "Connection: close\r\n\r\n",
        ] {
            assert!(plain.contains(h), "{plain}");
            assert!(stream.contains(h), "{stream}");
        }
        assert!(plain.starts_with("HTTP/1.1 404 Not Found\r\n"), "{plain}");
        assert!(plain.contains("Content-Length: 2\r\n"), "{plain}");
        assert!(stream.starts_with("HTTP/1.0 200 OK\r\n"), "{stream}");
        assert!(!stream.contains("Content-Length"), "{stream}");
        // Without --allow-origin, no CORS on either.
        assert!(!common(text(200, ""), None)
            .head(1)
            .contains("Access-Control"));
    }
}
