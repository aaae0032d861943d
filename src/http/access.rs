//! Who may ask: the `Host` guard against DNS rebinding, authentication (Basic or token), the
//! CORS preflight and the methods served. Everything that refuses a request before routing.

use super::conn::{Method, Request, Response};
use super::{query_param, send, text, Shared};
use crate::policy::{Identity, Refused};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Failed logins and refused `Host`s: logged once, then summarised.
static LOGIN_LOG: crate::logger::Throttled = crate::logger::Throttled::new();
static REBIND_LOG: crate::logger::Throttled = crate::logger::Throttled::new();
static LINK_LOG: crate::logger::Throttled = crate::logger::Throttled::new();
/// When the last "refused (429)" line was written: at most one a minute.
static SLOWED_LOG: parking_lot::Mutex<Option<Instant>> = parking_lot::const_mutex(None);

/// The host name of a `Host` value: without its port, brackets kept off an IPv6 literal.
pub(super) fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Without authentication, a web page the user visits could read `/snapshot` and `/status`
/// through a hostname it rebinds to this relay's address (DNS rebinding). A browser sends the
/// name it resolved in `Host`, so the relay answers only IP literals, `localhost` (and
/// `*.localhost`, which resolves to loopback) and the names given with `--allow-host`.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host).trim_end_matches('.');
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || allowed
            .iter()
            .any(|a| a.trim_end_matches('.').eq_ignore_ascii_case(name))
}

/// CORS preflight, the `Host` guard, the login limit, authentication and the method check:
/// the request back with who sent it, if it may go on to routing; `None` once it has been
/// answered here.
pub(super) fn admit(rq: Request, shared: &Shared) -> Option<(Request, Identity)> {
    let url = rq.target.clone();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if rq.method == Method::Options && shared.cfg.allow_origin.is_some() {
        let resp = Response::empty(204)
            .with_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            .with_header("Access-Control-Allow-Headers", "Authorization")
            .with_header("Access-Control-Max-Age", "600");
        send(rq, resp, shared);
        return None;
    }
    let policy = shared.cfg.policy.get();
    let rq = if policy.is_open() && !shared.unix {
        host_guard(rq, shared)?
    } else {
        rq
    };
    let token = query_param(query, "token");
    let presented = rq.header("Authorization").is_some()
        || token.is_some()
        || crate::signing::has_signature(query);
    // Unix sockets have no address: the proxy in front limits (docs/access.md).
    let ip = rq.ip.filter(|_| presented);
    if let Some(ip) = ip {
        let wait = shared.logins.lock().check(ip, Instant::now());
        if let Err(wait) = wait {
            note_slowed(shared);
            let secs = wait.as_secs().max(1);
            let resp = text(
                429,
                &format!("Too many failed logins from this address; try again in {secs} s.\n"),
            )
            .with_header("Retry-After", &secs.to_string());
            send(rq, resp, shared);
            return None;
        }
    }
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verdict = policy.identify(
        rq.header("Authorization"),
        token.as_deref(),
        path,
        query,
        now_unix,
    );
    let id = match verdict {
        Ok(id) => id,
        Err(refused) => {
            refuse(rq, refused, &policy, (ip, path), shared);
            return None;
        }
    };
    if !matches!(rq.method, Method::Get | Method::Head) {
        let resp =
            text(405, "Only GET and HEAD are supported.\n").with_header("Allow", "GET, HEAD");
        send(rq, resp, shared);
        return None;
    }
    Some((rq, id))
}

/// Without a login, only names that cannot be a rebinding attack: the request back if its
/// `Host` is one, `None` once it has been refused.
fn host_guard(rq: Request, shared: &Shared) -> Option<Request> {
    let Some(host) = rq
        .header("Host")
        .filter(|h| !host_allowed(h, &shared.cfg.allow_hosts))
        .map(str::to_string)
    else {
        return Some(rq);
    };
    REBIND_LOG.note(|more| {
        log::warn!(
            "{}: refused Host '{host}' (not an IP address, localhost or an --allow-host \
             name){}",
            rq.peer,
            crate::logger::more(more)
        )
    });
    let msg = format!(
        "This relay has no authentication, so it answers only requests addressed to an \
         IP address or localhost (a defence against DNS rebinding). To use the name \
         '{host}', start it with --allow-host {}, or set --auth or --token.\n",
        host_name(&host)
    );
    send(rq, text(403, &msg), shared);
    None
}

/// Answers a request the policy did not admit, and counts a failed login against `ip`.
fn refuse(
    rq: Request,
    refused: Refused,
    policy: &crate::policy::Policy,
    (ip, path): (Option<std::net::IpAddr>, &str),
    shared: &Shared,
) {
    if refused == Refused::Busy {
        let msg = "Too many logins are being checked; try again in a second.\n";
        return send(rq, text(503, msg).with_header("Retry-After", "1"), shared);
    }
    if refused != Refused::Missing {
        if let Some(ip) = ip {
            shared.logins.lock().failed(ip, Instant::now());
        }
    }
    if let Refused::BadLink(why) = refused {
        LINK_LOG.note(|more| {
            log::warn!(
                "{}: refused a signed link for {path}: {}{}",
                rq.peer,
                why.as_str(),
                crate::logger::more(more)
            )
        });
        let msg = format!("This link is not valid: {}.\n", why.as_str());
        return send(rq, text(403, &msg), shared);
    }
    if refused == Refused::Wrong {
        LOGIN_LOG.note(|more| {
            log::warn!(
                "{}: wrong credentials for {path}{}",
                rq.peer,
                crate::logger::more(more)
            )
        });
    }
    let challenge = if policy.offers_basic() {
        r#"Basic realm="mjpeg-relay", charset="UTF-8""#
    } else {
        r#"Bearer realm="mjpeg-relay""#
    };
    let resp = text(401, "Authentication required.\n").with_header("WWW-Authenticate", challenge);
    send(rq, resp, shared)
}

/// One line a minute at most for the logins refused with 429, with their count.
fn note_slowed(shared: &Shared) {
    let mut last = SLOWED_LOG.lock();
    if last.is_none_or(|t| t.elapsed() >= crate::login_limit::WINDOW) {
        let n = shared.logins.lock().take_refused();
        *last = Some(Instant::now());
        log::warn!(
            "{n} login attempt(s) refused with 429 in the last minute (addresses with {} failed \
             logins in a minute wait)",
            crate::login_limit::MAX_FAILURES
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_match_with_and_without_a_trailing_dot() {
        let allowed = vec!["cams.example.test.".to_string(), "door.local".to_string()];
        for host in [
            "cams.example.test",
            "cams.example.test.",
            "CAMS.example.test:8080",
            "door.local.:80",
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost",
            "x.localhost",
        ] {
            assert!(host_allowed(host, &allowed), "{host}");
        }
        for host in ["evil.example", "cams.example.test.evil", "door.local.x"] {
            assert!(!host_allowed(host, &allowed), "{host}");
        }
    }
}
