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
//!
//! A URL that answers `200 image/jpeg` serves single pictures (a camera's snapshot URL: an
//! easy mistake, and on many cheap cameras the only thing there is). It is then polled at
//! `--fps`, one request per picture, and the pictures go through the parser back to back like
//! raw MJPEG; the log says so once.

use super::reconnect::Upstream;
use std::io::{self, Read};
use std::time::{Duration, Instant};

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
    /// `host:port` of the URL, for `/status` and logs (never the user or password).
    authority: String,
    stream_name: String,
    /// How often a single-picture URL is polled (`--fps`).
    poll_every: Duration,
    /// The "serves single pictures" line was logged.
    said_polling: bool,
}

impl Client {
    pub fn new(stream_name: &str, url: &str, silence: Duration, fps: f64) -> Client {
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
        let authority = url
            .parse::<ureq::http::Uri>()
            .ok()
            .and_then(|u| {
                let host = u.host()?.to_string();
                Some(match u.port_u16() {
                    Some(p) => format!("{host}:{p}"),
                    None => format!("{host}:80"),
                })
            })
            .unwrap_or_default();
        Client {
            agent,
            url: url.to_string(),
            authority,
            stream_name: stream_name.to_string(),
            poll_every: Duration::from_secs_f64(1.0 / fps.clamp(0.1, 240.0)),
            said_polling: false,
        }
    }

    pub fn connect(&mut self) -> Result<Upstream, String> {
        let (body, content_type) = get(&self.agent, &self.url)?;
        if is_web_page(&content_type) {
            return Err(web_page_hint(&self.url));
        }
        if is_single_picture(&content_type) {
            if !self.said_polling {
                self.said_polling = true;
                log::info!(
                    "stream '{}': {} serves single pictures ({content_type}), not a stream; \
                     polling it every {} ms (--fps)",
                    self.stream_name,
                    super::redact(&self.url),
                    self.poll_every.as_millis()
                );
            }
            let poller = Poller {
                agent: self.agent.clone(),
                url: self.url.clone(),
                every: self.poll_every,
                next: Instant::now() + self.poll_every,
                body: Some(body),
            };
            return Ok(Upstream {
                reader: Box::new(poller),
                peer: self.authority.clone(),
                boundary: None,
            });
        }
        Ok(Upstream {
            reader: Box::new(body),
            peer: self.authority.clone(),
            boundary: boundary_of(&content_type),
        })
    }
}

type Body = ureq::BodyReader<'static>;

/// A transport error as a person reads it (ureq's own text is `io: Connection refused (os
/// error 111)`).
fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => crate::logger::describe_io(&io),
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::HostNotFound => "host not found (check the name)".into(),
        other => other.to_string(),
    }
}

/// One GET: the body and its content type, or why not (`HTTP 404 (check the path)`).
fn get(agent: &ureq::Agent, url: &str) -> Result<(Body, String), String> {
    let resp = agent.get(url).call().map_err(describe)?;
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
    Ok((resp.into_body().into_reader(), content_type))
}

/// `text/html`: a web page, e.g. a relay's or a camera's viewer page given instead of its
/// stream URL.
fn is_web_page(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("text/html")
}

/// What to do about a URL that answers with a web page.
fn web_page_hint(url: &str) -> String {
    let shown = super::redact(url);
    let path_is_page = shown
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .is_none_or(|(_, path)| path.is_empty() || path.ends_with('/'));
    let try_this = if path_is_page {
        let base = if shown.ends_with('/') {
            shown.clone()
        } else {
            format!("{shown}/")
        };
        format!(
            "; if it is another mjpeg-relay, its stream is {base}stream; an IP camera's is at \
             the path its manual gives (often /video.cgi or /mjpg/video.mjpg)"
        )
    } else {
        "; give the camera's MJPEG stream URL (its manual names it, often /video.cgi or \
         /mjpg/video.mjpg)"
            .to_string()
    };
    format!("{shown} is a web page (text/html), not an MJPEG stream{try_this}")
}

/// `image/jpeg` (or `image/jpg`, `image/pjpeg`): one picture per response.
fn is_single_picture(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    ["image/jpeg", "image/jpg", "image/pjpeg"]
        .iter()
        .any(|m| mime.eq_ignore_ascii_case(m))
}

/// A snapshot URL read as a feed: each response body in turn, a new request every `every`
/// (on a fixed schedule, skipping ahead if a request took longer). A failed request ends the
/// "connection", and the reconnect loop takes over as for any lost upstream.
struct Poller {
    agent: ureq::Agent,
    url: String,
    every: Duration,
    next: Instant,
    /// The picture being read; at most one response open at a time.
    body: Option<Body>,
}

impl Read for Poller {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(body) = &mut self.body {
                let n = body.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.body = None;
            }
            // At most one poll interval (--fps ≥ 0.1: 10 s); shutdown ends the process.
            std::thread::sleep(self.next.saturating_duration_since(Instant::now()));
            self.next = (self.next + self.every).max(Instant::now());
            let (body, content_type) =
                get(&self.agent, &self.url).map_err(|e| io::Error::other(format!("poll: {e}")))?;
            if !is_single_picture(&content_type) {
                return Err(io::Error::other(format!(
                    "poll: the URL now answers {content_type}, not a picture"
                )));
            }
            self.body = Some(body);
        }
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
    fn a_web_page_says_where_the_stream_is() {
        let h = web_page_hint("http://admin:pw@cam:8080/");
        assert!(
            h.contains("text/html") && h.contains("http://admin:***@cam:8080/stream"),
            "{h}"
        );
        assert!(!h.contains(":pw@"));
        assert!(web_page_hint("http://cam:8080").contains("http://cam:8080/stream"));
        let h = web_page_hint("http://cam/index.html");
        assert!(
            h.contains("manual") && !h.contains("/index.html/stream"),
            "{h}"
        );
        assert!(is_web_page("text/html; charset=utf-8"));
        assert!(!is_web_page("multipart/x-mixed-replace;boundary=x"));
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:8080/stream").is_ok());
        assert!(check_url("http://user:pw@cam/video.cgi?res=1").is_ok());
        assert!(check_url("http://").is_err());
        assert!(check_url("http://bad host/").is_err());
    }
}
