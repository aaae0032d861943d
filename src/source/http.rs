//! `http://…`: pull MJPEG over HTTP — IP cameras, mjpg-streamer, ustreamer, ffmpeg's
//! `-listen 1` server, or another mjpeg-relay (chaining).
//!
//! The HTTP client is `ureq` (no default features: no TLS, no compression): it already does
//! redirects, chunked transfer encoding, and Basic auth from `http://user:pass@host/`, all
//! things a hand-written client gets subtly wrong. Its body reader hands over bytes as they
//! arrive, so the parser still emits each frame the moment its last byte is in; the chaining
//! test checks exactly that.
//!
//! The boundary comes from the response's `Content-Type`. A server that does not say
//! `multipart/...` (ffmpeg says `application/octet-stream` unless told otherwise) gets its
//! format detected from the body, as any other source.

use super::reconnect::Upstream;
use std::time::Duration;

/// Time to wait for the response head once connected.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REDIRECTS: u32 = 5;

/// Checks that `url` can be requested, at start-up, so a typo is refused with exit code 2.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("'{}' is not a URL: {e}", super::redact(url)))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("'{}' has no host", super::redact(url)));
    }
    Ok(())
}

/// One configured `http://` source. Cheap to keep; every `connect` is a fresh request.
pub struct Client {
    agent: ureq::Agent,
    url: String,
}

impl Client {
    pub fn new(url: &str, silence: Duration) -> Client {
        let agent = ureq::Agent::config_builder()
            // A 401 or 404 is reported by us, with the status, not as a transport error.
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            // A read that waits longer than --source-timeout means the upstream went silent.
            .timeout_per_read(Some(silence))
            .user_agent(format!("mjpeg-relay/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            url: url.to_string(),
        }
    }

    pub fn connect(&self) -> Result<Upstream, String> {
        let resp = self
            .agent
            .get(&self.url)
            .call()
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if status != 200 {
            let hint = match status.as_u16() {
                401 | 403 => " (check the user and password in the URL)",
                404 => " (check the path)",
                _ => "",
            };
            return Err(format!("HTTP {status}{hint}"));
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let boundary = boundary_of(&content_type);
        let peer = format!("HTTP {content_type}");
        Ok(Upstream {
            reader: Box::new(resp.into_body().into_reader()),
            peer,
            boundary,
        })
    }
}

/// The `boundary` parameter of a `multipart/...` content type, if any.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_from_content_types() {
        let b = |s| boundary_of(s);
        assert_eq!(
            b("multipart/x-mixed-replace;boundary=spionisto").as_deref(),
            Some("spionisto")
        );
        assert_eq!(
            b("multipart/x-mixed-replace; Boundary=\"--myboundary\"").as_deref(),
            Some("--myboundary")
        );
        assert_eq!(
            b("Multipart/X-Mixed-Replace; charset=x; boundary=ffmpeg").as_deref(),
            Some("ffmpeg")
        );
        assert_eq!(b("application/octet-stream"), None);
        assert_eq!(b("multipart/x-mixed-replace"), None);
        assert_eq!(b(""), None);
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:8080/stream").is_ok());
        assert!(check_url("http://user:pw@cam/video.cgi?res=1").is_ok());
        assert!(check_url("http://").is_err());
        assert!(check_url("http://bad host/").is_err());
    }
}
