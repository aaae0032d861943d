//! How every response leaves: CORS and `nosniff` on all of them, `no-cache` where a picture
//! or a state must never be stale, and the small text and HTML bodies.

use super::conn::{Request, Response};
use super::Shared;

/// `Access-Control-Allow-Credentials`: another origin's page may read what the relay serves
/// without credentials (with `?token=` in the URL), never with the browser's stored login.
pub(super) fn send(rq: Request, resp: Response, shared: &Shared) {
    let resp = resp.with_header("X-Content-Type-Options", "nosniff");
    let resp = match &shared.cfg.allow_origin {
        Some(origin) => resp
            .with_header("Access-Control-Allow-Origin", origin)
            .with_header("Vary", "Origin"),
        None => resp,
    };
    let status = resp.status();
    if let Err(e) = rq.respond(resp) {
        log::debug!("response {status} not delivered: {e}");
    }
}

pub(crate) trait NoCache {
    fn no_cache(self) -> Self;
}

impl NoCache for Response {
    fn no_cache(self) -> Self {
        self.with_header(
            "Cache-Control",
            "no-cache, no-store, must-revalidate, max-age=0",
        )
        .with_header("Pragma", "no-cache")
        .with_header("Expires", "0")
    }
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
