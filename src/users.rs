//! The `[[user]]` entries of `--config`: a name, a password hash, the streams the user may see
//! (names or `*` patterns), whether the user is an admin (every stream, `/status` and
//! `/metrics` whole), and how many viewers the user may have at once.
//!
//! Passwords are stored as `htpasswd -nbB` (bcrypt, `$2y$`/`$2b$`/`$2a$`) or an argon2 PHC
//! string (`$argon2id$…`) writes them. A plain-text password is refused unless marked
//! `plain:` (the relay warns at start): a config file gets copied, pasted and committed.
//!
//! Checking a bcrypt hash takes tens of milliseconds by design (a second on a slow ARM core at
//! cost 12), and a browser sends its login with every request: the [`crate::access`] module
//! remembers logins it has checked, so each is paid for once.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

/// One `[[user]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: Password,
    /// Names and patterns of the streams this user may see; an admin sees every stream.
    pub streams: Vec<String>,
    pub admin: bool,
    /// At most this many stream connections at once (`/stream`, `/mux`), over all streams.
    pub max_viewers: Option<usize>,
}

/// A stored password, as the config file gives it.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    Bcrypt(String),
    Argon2(String),
    /// `plain:…` in the file: accepted with a warning.
    Plain(String),
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hash or the password: Debug output ends up in logs and panics.
        f.write_str(match self {
            Password::Bcrypt(_) => "Password::Bcrypt(…)",
            Password::Argon2(_) => "Password::Argon2(…)",
            Password::Plain(_) => "Password::Plain(…)",
        })
    }
}

impl Password {
    /// Reads a `password =` value.
    pub fn parse(v: &str) -> Result<Password, String> {
        if let Some(p) = v.strip_prefix("plain:") {
            if p.is_empty() {
                return Err("an empty password".into());
            }
            return Ok(Password::Plain(p.to_string()));
        }
        if ["$2y$", "$2b$", "$2a$", "$2x$"]
            .iter()
            .any(|p| v.starts_with(p))
        {
            // Let the library say whether it is well-formed, once, here: a typo should stop
            // the start, not fail every login.
            bcrypt::verify("", v).map_err(|e| format!("not a valid bcrypt hash: {e}"))?;
            return Ok(Password::Bcrypt(v.to_string()));
        }
        if v.starts_with("$argon2") {
            argon2::password_hash::phc::PasswordHash::new(v)
                .map_err(|e| format!("not a valid argon2 hash: {e}"))?;
            return Ok(Password::Argon2(v.to_string()));
        }
        Err(
            "not a bcrypt hash ($2y$…, as 'htpasswd -nbB USER PASS' prints it) or an argon2 \
             hash ($argon2id$…); a plain-text password must be written 'plain:PASSWORD'"
                .into(),
        )
    }

    pub fn is_plain(&self) -> bool {
        matches!(self, Password::Plain(_))
    }

    /// Whether `presented` is the password. Constant-time for plain text; the hashes'
    /// comparisons are the libraries' own (constant-time too).
    pub fn verify(&self, presented: &str) -> bool {
        match self {
            Password::Bcrypt(h) => bcrypt::verify(presented, h).unwrap_or(false),
            Password::Argon2(h) => {
                use argon2::password_hash::{phc::PasswordHash, PasswordVerifier};
                PasswordHash::new(h).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(presented.as_bytes(), &parsed)
                        .is_ok()
                })
            }
            Password::Plain(p) => crate::auth::ct_eq(p.as_bytes(), presented.as_bytes()),
        }
    }
}

impl User {
    /// Whether this user may see the stream `name`.
    pub fn may_see(&self, name: &str) -> bool {
        self.admin || self.streams.iter().any(|p| pattern_matches(p, name))
    }
}

/// A stream pattern: a name, or `*` standing for any run of characters (`garden-*`, `*`).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    // Linear in the name for the one-star patterns people write; with several stars, the
    // classic greedy match with one backtrack point, still linear per star.
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = n.get(ni) {
        let at = p.get(pi).copied();
        if at == Some(b'*') {
            star = Some((pi, ni));
            pi += 1;
        } else if at == Some(c) {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p.iter().skip(pi).all(|&b| b == b'*')
}

/// Whether a pattern is well-formed: the characters of a stream name, and `*`.
pub fn check_pattern(p: &str) -> Result<(), String> {
    if !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_*".contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "'{p}' is not a stream name or pattern (letters, digits, -, _ and *)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for (p, n, want) in [
            ("*", "door", true),
            ("door", "door", true),
            ("door", "doors", false),
            ("garden-*", "garden-east", true),
            ("garden-*", "garden-", true),
            ("garden-*", "garden", false),
            ("*-cam", "front-cam", true),
            ("*-cam", "front-cams", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(pattern_matches(p, n), want, "{p} {n}");
        }
        // Linear, not exponential, on a hostile pattern.
        let long = "a".repeat(10_000);
        assert!(!pattern_matches("*a*a*a*a*a*a*a*a*b", &long));
    }

    #[test]
    fn passwords_of_each_kind() {
        // `htpasswd -nbB -C 5 alice secret` (cost 5, to keep the test quick).
        let p = Password::parse("$2y$05$NViGYnmeD75YWfENq1y5f.ggFZqSmyD1umkQRuWcRMM4cysQxnIie")
            .unwrap();
        assert!(p.verify("secret"));
        assert!(!p.verify("Secret"));
        // `echo -n secret | argon2 saltsalt -id -e` (Debian's argon2, the reference code).
        let argon =
            "$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$OLeWCvLwvsLRPgRDUFsaPr4TPYfqZKBxQuyYI2VLP2w";
        let a = Password::parse(argon).unwrap();
        assert!(a.verify("secret"), "argon2id");
        assert!(!a.verify("secreT"));
        let plain = Password::parse("plain:secret").unwrap();
        assert!(plain.is_plain() && plain.verify("secret") && !plain.verify("secre"));
        for bad in ["secret", "", "plain:", "$2y$10$short", "$argon2id$nonsense"] {
            assert!(Password::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{p:?}"), "Password::Bcrypt(…)");
    }
}
