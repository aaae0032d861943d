//! Access control: HTTP Basic (`--auth USER:PASS` or `--auth-file`) and/or a token
//! (`--token`, as `?token=` for `<img>` tags that cannot send headers, or
//! `Authorization: Bearer`). When either is set every endpoint requires one of them.
//!
//! Comparisons take the same time whatever the input, so the secret cannot be guessed byte by
//! byte from response times. Nothing here touches sockets: the HTTP layer passes in the
//! `Authorization` header and the query string.

/// What the command line configured. Empty means open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// The expected `Authorization` value for Basic, `Basic <base64(user:pass)>`'s credentials.
    basic: Option<Vec<u8>>,
    token: Option<Vec<u8>>,
}

/// How a request fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No credentials at all.
    Missing,
    /// Credentials that do not match.
    Wrong,
}

impl Auth {
    pub fn new(user_pass: Option<&str>, token: Option<&str>) -> Auth {
        Auth {
            basic: user_pass.map(|up| base64(up.as_bytes()).into_bytes()),
            token: token.map(|t| t.as_bytes().to_vec()),
        }
    }

    pub fn is_open(&self) -> bool {
        self.basic.is_none() && self.token.is_none()
    }

    pub fn has_basic(&self) -> bool {
        self.basic.is_some()
    }

    /// `authorization`: the request's `Authorization` header, if any; `token`: its `?token=`.
    pub fn check(&self, authorization: Option<&str>, token: Option<&str>) -> Verdict {
        if self.is_open() {
            return Verdict::Allowed;
        }
        let mut presented = false;
        if let Some(h) = authorization {
            let (scheme, value) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
            let value = value.trim().as_bytes();
            presented = true;
            let ok = if scheme.eq_ignore_ascii_case("basic") {
                self.basic.as_deref().is_some_and(|b| ct_eq(b, value))
            } else if scheme.eq_ignore_ascii_case("bearer") {
                self.token.as_deref().is_some_and(|t| ct_eq(t, value))
            } else {
                false
            };
            if ok {
                return Verdict::Allowed;
            }
        }
        if let Some(t) = token {
            presented = true;
            if self
                .token
                .as_deref()
                .is_some_and(|want| ct_eq(want, t.as_bytes()))
            {
                return Verdict::Allowed;
            }
        }
        if presented {
            Verdict::Wrong
        } else {
            Verdict::Missing
        }
    }
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    // Keep the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

/// Standard base64 with padding (RFC 4648), for the expected Basic credentials.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn check_user_pass(v: &str) -> Result<(), String> {
    match v.split_once(':') {
        Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok(()),
        _ => Err("expected USER:PASS with both parts non-empty".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("martin:secret", "bWFydGluOnNlY3JldA=="),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn checks() {
        let open = Auth::default();
        assert_eq!(open.check(None, None), Verdict::Allowed);
        let a = Auth::new(Some("martin:secret"), Some("tok123"));
        assert_eq!(a.check(None, None), Verdict::Missing);
        assert_eq!(
            a.check(Some("Basic bWFydGluOnNlY3JldA=="), None),
            Verdict::Allowed
        );
        assert_eq!(
            a.check(Some("basic  bWFydGluOnNlY3JldA== "), None),
            Verdict::Allowed
        );
        assert_eq!(
            a.check(Some("Basic bWFydGluOndyb25n"), None),
            Verdict::Wrong
        );
        assert_eq!(a.check(Some("Bearer tok123"), None), Verdict::Allowed);
        assert_eq!(a.check(Some("Bearer tok12"), None), Verdict::Wrong);
        assert_eq!(a.check(None, Some("tok123")), Verdict::Allowed);
        assert_eq!(a.check(None, Some("nope")), Verdict::Wrong);
        // A wrong header does not hide a right token, and vice versa.
        assert_eq!(a.check(Some("Basic x"), Some("tok123")), Verdict::Allowed);
        let basic_only = Auth::new(Some("u:p"), None);
        assert_eq!(basic_only.check(Some("Bearer u:p"), None), Verdict::Wrong);
        assert_eq!(basic_only.check(None, Some("dTpw")), Verdict::Wrong);
    }

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
    }
}
