//! Signed links: a URL that opens one stream, with the parameters it names, until it expires,
//! with no login. What a dashboard embeds in an `<img src>`: browsers do not pass a page's
//! login on to the images in it, and a token in the URL would open every camera for good.
//!
//! A link is the path and its query, in the order signed, ending in `sig=`:
//! `/door/stream?width=320&fps=5&expires=1767225600&sig=…`. The signature is HMAC-SHA256 over
//! `mjpeg-relay link v1`, the path and everything in the query before `&sig=`, with the key of
//! `[signing] key_file`. So a changed path (another stream, `/snapshot` for `/stream`), a
//! changed, added or removed parameter, a later expiry or a truncated signature all fail, and
//! nothing may follow the signature. Two keys may be active while one is rotated out: links
//! are signed with the first and checked against each.
//!
//! Sans-IO and clock-free: the time is an argument, so the expiry boundary is unit-tested.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use base64::Engine as _;
use ring::hmac;

/// A link lives at most a year: a mistyped TTL (`--ttl 1000d`) should not make a link that
/// outlives the key it was signed with.
pub const MAX_TTL_SECS: u64 = 366 * 86_400;

/// The parameter that carries the expiry, in whole seconds since 1970 (UTC).
pub const EXPIRES: &str = "expires";
/// The parameter that bounds the viewers one link may have at once.
pub const MAX_VIEWERS: &str = "max_viewers";

/// The keys links are signed with (the first) and checked against (any).
#[derive(Clone, Default)]
pub struct Keys {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        write!(f, "Keys({} active)", self.keys.len())
    }
}

/// A key file's key: its bytes, trimmed of surrounding whitespace (an `openssl rand -hex 32 >
/// key` file ends in a newline). At least 32 bytes, so a short password is not a key.
pub fn key_from_file_text(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let trimmed = bytes.trim_ascii();
    if trimmed.len() < 32 {
        return Err(format!(
            "the key is {} bytes; at least 32 are needed (make one with \
             'openssl rand -hex 32 > FILE')",
            trimmed.len()
        ));
    }
    Ok(trimmed.to_vec())
}

/// Why a link was refused (for the log; the client gets a plain 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No keys are configured, so no link can be valid.
    NoKeys,
    /// `sig=` missing, not last, or not base64url.
    Malformed,
    /// The signature does not match the path and parameters.
    BadSignature,
    /// No `expires=`, or not a number.
    NoExpiry,
    Expired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoKeys => "no signing key is configured",
            Refusal::Malformed => "malformed signature",
            Refusal::BadSignature => "the signature does not match",
            Refusal::NoExpiry => "no expiry",
            Refusal::Expired => "expired",
        }
    }
}

/// What a valid link grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub expires: u64,
    /// `max_viewers=` of the link, if it names one.
    pub max_viewers: Option<usize>,
    /// Names the link among others (its signature's first characters) for viewer counts and
    /// logs; not enough to rebuild it.
    pub id: String,
}

impl Keys {
    pub fn new(keys: &[Vec<u8>]) -> Keys {
        Keys {
            keys: keys
                .iter()
                .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The link for `path` with `params` (in this order, values already URL-safe), valid
    /// until `expires`: the path and query to append to the relay's address.
    pub fn sign(&self, path: &str, params: &[(&str, String)], expires: u64) -> Option<String> {
        let key = self.keys.first()?;
        let mut query: String = params.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        query.push_str(&format!("{EXPIRES}={expires}"));
        let tag = hmac::sign(key, &message(path, &query));
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
        Some(format!("{path}?{query}&sig={sig}"))
    }

    /// Whether `path?query` is a valid link at `now` (seconds since 1970).
    pub fn verify(&self, path: &str, query: &str, now: u64) -> Result<Grant, Refusal> {
        if self.keys.is_empty() {
            return Err(Refusal::NoKeys);
        }
        let (signed, sig) = split_signature(query).ok_or(Refusal::Malformed)?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| Refusal::Malformed)?;
        let msg = message(path, signed);
        // Every key is tried, whichever matches: the time does not say which key it was.
        let mut ok = false;
        for key in &self.keys {
            ok |= hmac::verify(key, &msg, &tag).is_ok();
        }
        if !ok {
            return Err(Refusal::BadSignature);
        }
        let expires = param(signed, EXPIRES)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(Refusal::NoExpiry)?;
        if now >= expires {
            return Err(Refusal::Expired);
        }
        let max_viewers = param(signed, MAX_VIEWERS).and_then(|v| v.parse::<usize>().ok());
        Ok(Grant {
            expires,
            max_viewers,
            id: sig.chars().take(8).collect(),
        })
    }
}

/// Whether a query carries a signature at all (`sig=` among its parameters): such a request
/// is judged as a link, whatever else it carries.
pub fn has_signature(query: &str) -> bool {
    query
        .split('&')
        .any(|p| p.starts_with("sig=") || p == "sig")
}

/// `(what was signed, the signature)`: the signature must be the last parameter.
fn split_signature(query: &str) -> Option<(&str, &str)> {
    let (signed, sig) = match query.rfind("&sig=") {
        Some(i) => (&query[..i], &query[i + 5..]),
        None => return None,
    };
    if sig.is_empty() || sig.contains(['&', '=']) {
        return None;
    }
    Some((signed, sig))
}

/// A parameter's raw value: the ones read here are digits, nothing to decode.
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn message(path: &str, signed_query: &str) -> Vec<u8> {
    format!("mjpeg-relay link v1\n{path}\n{signed_query}").into_bytes()
}

/// `90`, `90s`, `15m`, `1h`, `7d`: a TTL in seconds, at most [`MAX_TTL_SECS`].
pub fn parse_ttl(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let (num, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "s"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|s| (1..=MAX_TTL_SECS).contains(s))
        .ok_or_else(|| {
            format!("'{v}' is not a TTL: seconds, or a number with s, m, h or d, up to 366d")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&[b"0123456789abcdef0123456789abcdef".to_vec()])
    }

    const T: u64 = 1_800_000_000;

    #[test]
    fn a_link_is_valid_until_the_second_it_expires() {
        let k = keys();
        let link = k
            .sign("/door/stream", &[("width", "320".into())], T + 60)
            .unwrap();
        let (path, query) = link.split_once('?').unwrap();
        assert_eq!(path, "/door/stream");
        assert!(query.starts_with("width=320&expires="), "{query}");
        let g = k.verify(path, query, T).unwrap();
        assert_eq!(g.expires, T + 60);
        assert!(k.verify(path, query, T + 59).is_ok());
        // The control: one second later the same link fails.
        assert_eq!(k.verify(path, query, T + 60), Err(Refusal::Expired));
        assert_eq!(k.verify(path, query, T + 1000), Err(Refusal::Expired));
    }

    #[test]
    fn every_change_to_a_link_fails() {
        let k = keys();
        let link = k
            .sign("/door/stream", &[("fps", "5".into())], T + 60)
            .unwrap();
        let (path, query) = link.split_once('?').unwrap();
        assert!(k.verify(path, query, T).is_ok());
        // Another stream, another endpoint.
        assert_eq!(
            k.verify("/garden/stream", query, T),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            k.verify("/door/snapshot", query, T),
            Err(Refusal::BadSignature)
        );
        // A changed, added or removed parameter; a later expiry.
        for q in [
            query.replace("fps=5", "fps=6"),
            query.replace("fps=5&", ""),
            format!("width=999&{query}"),
            query.replace(
                &format!("expires={}", T + 60),
                &format!("expires={}", T + 99999),
            ),
            format!("{query}&width=1"),
            query[..query.len() - 1].to_string(),
            query.replace("&sig=", "&sig=A"),
        ] {
            assert!(k.verify(path, &q, T).is_err(), "{q}");
        }
        // Each bit of the signature.
        let sig_at = query.rfind("&sig=").unwrap() + 5;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&query[sig_at..])
            .unwrap();
        for bit in 0..raw.len() * 8 {
            let mut flipped = raw.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let q = format!(
                "{}{}",
                &query[..sig_at],
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&flipped)
            );
            assert_eq!(
                k.verify(path, &q, T),
                Err(Refusal::BadSignature),
                "bit {bit}"
            );
        }
        // Another key's link.
        let other = Keys::new(&[b"another key, also 32 bytes long!".to_vec()]);
        assert_eq!(other.verify(path, query, T), Err(Refusal::BadSignature));
    }

    #[test]
    fn two_keys_during_a_rotation() {
        let old = b"the old key, at least 32 bytes..".to_vec();
        let new = b"the new key, at least 32 bytes..".to_vec();
        let before = Keys::new(std::slice::from_ref(&old));
        let during = Keys::new(&[new.clone(), old.clone()]);
        let after = Keys::new(&[new]);
        let old_link = before.sign("/a/stream", &[], T + 10).unwrap();
        let new_link = during.sign("/a/stream", &[], T + 10).unwrap();
        let q = |l: &str| l.split_once('?').unwrap().1.to_string();
        assert!(during.verify("/a/stream", &q(&old_link), T).is_ok());
        assert!(during.verify("/a/stream", &q(&new_link), T).is_ok());
        assert!(after.verify("/a/stream", &q(&new_link), T).is_ok());
        assert_eq!(
            after.verify("/a/stream", &q(&old_link), T),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn malformed_links_and_no_keys() {
        let k = keys();
        for q in [
            "",
            "sig=",
            "expires=5",
            "a=1&sig=",
            "a=1&sig=***",
            "sig=abc",
        ] {
            assert!(k.verify("/x/stream", q, T).is_err(), "{q}");
        }
        assert_eq!(
            Keys::default().verify("/x/stream", "expires=1&sig=abc", T),
            Err(Refusal::NoKeys)
        );
        assert!(has_signature("a=1&sig=x"));
        assert!(!has_signature("a=1&signal=x"));
    }

    #[test]
    fn max_viewers_is_read_from_the_signed_part() {
        let k = keys();
        let link = k
            .sign("/a/stream", &[(MAX_VIEWERS, "2".into())], T + 10)
            .unwrap();
        let g = k
            .verify("/a/stream", link.split_once('?').unwrap().1, T)
            .unwrap();
        assert_eq!(g.max_viewers, Some(2));
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("7d"), Ok(7 * 86_400));
        for bad in ["", "0", "1y", "h", "-5", "400d", "99999999999999999999"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(key_from_file_text(b"short\n").is_err());
        assert_eq!(
            key_from_file_text(b"  0123456789abcdef0123456789abcdef\n")
                .unwrap()
                .len(),
            32
        );
    }
}
