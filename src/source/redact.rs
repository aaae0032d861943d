//! Secrets out of source specs: what logs, `/status` and error messages show of a
//! `--source` (a camera URL with a password, a command line with a token). Text in, text out.

/// Query parameter names whose values are secrets (matched case-insensitively, also as the
/// end of a longer name such as `api_key` or `access_token`), as cheap IP cameras put them in
/// URLs: `?user=admin&pwd=…`.
const SECRET_PARAMS: &[&str] = &[
    "pass",
    "password",
    "passwd",
    "pwd",
    "pw",
    "token",
    "key",
    "auth",
    "secret",
    "sig",
    "signature",
    "credential",
    "credentials",
    "apikey",
];

/// `spec` with every secret replaced by `***`, for logs and `/status`: the password of every
/// URL in it (`scheme://user:pass@host`, also inside an `exec:` command line), the value of
/// every query parameter named like a secret (`?pwd=…`, `&token=…`), and in command lines the
/// credentials of `-u USER:PASS` (curl), of flags named like a secret (`--password X`,
/// `--http-password=X`, `-key X`) and of an `Authorization:` header. Linear in the length.
pub fn redact(spec: &str) -> String {
    redact_args(&redact_authorization(&redact_urls(spec)))
}

/// Whether a flag or parameter name means a secret: one of [`SECRET_PARAMS`], or ending in
/// one after `-` or `_` (`http-password`, `api_key`).
fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !lower.is_empty()
        && (SECRET_PARAMS.contains(&lower.as_str())
            || lower
                .rsplit(['-', '_'])
                .next()
                .is_some_and(|last| last != lower && SECRET_PARAMS.contains(&last)))
}

/// The credentials after every `Authorization:` (a header given to ffmpeg's `-headers` or
/// curl's `-H`): the scheme word stays, what follows it up to a quote or line end goes.
fn redact_authorization(s: &str) -> String {
    const NAME: &str = "authorization:";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.to_ascii_lowercase().find(NAME) {
        let (head, tail) = rest.split_at(i + NAME.len());
        out.push_str(head);
        let value_end = tail
            .find(['\'', '"', '\r', '\n', '\\'])
            .unwrap_or(tail.len());
        let (value, after) = tail.split_at(value_end);
        let trimmed = value.trim_start();
        out.push_str(value.get(..value.len() - trimmed.len()).unwrap_or(""));
        match trimmed.split_once(' ') {
            Some((scheme, _)) => {
                out.push_str(scheme);
                out.push_str(" ***");
            }
            None if !trimmed.is_empty() => out.push_str("***"),
            None => {}
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Command-line flags that carry secrets: `-u USER:PASS` (and curl's `-su`), `--user`,
/// `--password X`, `--http-password=X`. Words are separated by white space; quoting is not
/// interpreted, so a quoted secret with spaces in it keeps its later words.
fn redact_args(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // What the previous word asked of this one.
    enum Next {
        Keep,
        User,
        Secret,
    }
    let mut next = Next::Keep;
    let mut rest = s;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(rest.get(..ws).unwrap_or(""));
        rest = rest.get(ws..).unwrap_or("");
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        rest = after;
        let quote = word
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .map(String::from)
            .unwrap_or_default();
        match std::mem::replace(&mut next, Next::Keep) {
            Next::User => {
                let user = word.split(':').next().unwrap_or("");
                out.push_str(user);
                if word.contains(':') {
                    out.push_str(":***");
                    out.push_str(&quote);
                }
                continue;
            }
            Next::Secret => {
                out.push_str(&quote);
                out.push_str("***");
                out.push_str(&quote);
                continue;
            }
            Next::Keep => {}
        }
        let bare = word.trim_start_matches(['\'', '"']);
        if let Some(flag) = bare.strip_prefix('-') {
            let long = flag.strip_prefix('-');
            let name = long.unwrap_or(flag);
            if let Some((n, _)) = name.split_once('=') {
                if secret_name(n) {
                    let keep = word.len() - bare.len() + 1 + usize::from(long.is_some()) + n.len();
                    out.push_str(word.get(..keep).unwrap_or(word));
                    out.push_str("=***");
                    continue;
                }
            } else if matches!(name, "user" | "proxy-user")
                || (long.is_none()
                    && name.ends_with('u')
                    && name.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                next = Next::User;
            } else if secret_name(name) {
                next = Next::Secret;
            }
        }
        out.push_str(word);
    }
    out
}

/// URL passwords and secret query parameters.
fn redact_urls(spec: &str) -> String {
    let mut out = String::with_capacity(spec.len());
    let mut rest = spec;
    // URLs: userinfo between "://" and the next "@" before any "/", space or quote.
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(at) => {
                let user = authority
                    .get(..at)
                    .unwrap_or("")
                    .split(':')
                    .next()
                    .unwrap_or("");
                out.push_str(user);
                out.push_str(":***");
                out.push_str(authority.get(at..).unwrap_or(""));
            }
            None => out.push_str(authority),
        }
        rest = after;
    }
    out.push_str(rest);
    redact_params(&out)
}

/// Replaces the value of each `?name=value` / `&name=value` whose name means a secret.
fn redact_params(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['?', '&', ';']) {
        let (head, tail) = rest.split_at(i + 1);
        out.push_str(head);
        let name_end = tail
            .find(|c: char| c == '=' || c == '&' || c == '?' || c.is_whitespace())
            .unwrap_or(tail.len());
        let (name, after) = tail.split_at(name_end);
        out.push_str(name);
        rest = after;
        if let (true, Some(value)) = (secret_name(name), after.strip_prefix('=')) {
            let end = value
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || c == '\'' || c == '"')
                .unwrap_or(value.len());
            out.push_str("=***");
            rest = value.get(end..).unwrap_or("");
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("http://admin:hunter2@cam:81/video?x=1"),
            "http://admin:***@cam:81/video?x=1"
        );
        assert_eq!(redact("http://cam/video"), "http://cam/video");
        assert_eq!(redact("exec:echo a@b"), "exec:echo a@b");
        assert_eq!(redact("http://cam/a@b"), "http://cam/a@b");
        // Issue 13: command lines and credential query parameters.
        assert_eq!(
            redact("exec:ffmpeg -i rtsp://admin:pw@10.0.0.9/s -f mjpeg -"),
            "exec:ffmpeg -i rtsp://admin:***@10.0.0.9/s -f mjpeg -"
        );
        assert_eq!(
            redact("http://cam/snap.cgi?user=admin&pwd=hunter2&res=1"),
            "http://cam/snap.cgi?user=admin&pwd=***&res=1"
        );
        assert_eq!(
            redact("exec:curl 'http://c/v?Password=x1&api_key=k2' -o - | cat"),
            "exec:curl 'http://c/v?Password=***&api_key=***' -o - | cat"
        );
        assert_eq!(
            redact("http://c/v?token=abc#frag"),
            "http://c/v?token=***#frag"
        );
        assert_eq!(
            redact("http://c/v?monkey=1&keyboard=2"),
            "http://c/v?monkey=1&keyboard=2"
        );
        assert_eq!(
            redact("exec:a https://u:p@h/x?sig=s http://v:q@i/"),
            "exec:a https://u:***@h/x?sig=*** http://v:***@i/"
        );
        // Issue 20 item 8: credentials in command-line flags and headers.
        assert_eq!(
            redact("exec:curl -su admin:hunter2 http://cam/video.mjpg"),
            "exec:curl -su admin:*** http://cam/video.mjpg"
        );
        assert_eq!(
            redact("exec:curl --user admin:hunter2 -o - http://c/"),
            "exec:curl --user admin:*** -o - http://c/"
        );
        assert_eq!(
            redact("exec:ffmpeg -headers 'Authorization: Basic YWRtaW46aHVudGVy' -i http://c/ -f mjpeg -"),
            "exec:ffmpeg -headers 'Authorization: Basic ***' -i http://c/ -f mjpeg -"
        );
        assert_eq!(
            redact("exec:wget --http-password=hunter2 --password hunter3 -O - http://c/"),
            "exec:wget --http-password=*** --password *** -O - http://c/"
        );
        assert_eq!(
            redact("exec:cam --api_key=k1 -token t2 --keyint 5 -vf x"),
            "exec:cam --api_key=*** -token *** --keyint 5 -vf x"
        );
        assert_eq!(
            redact("exec:curl -H \"authorization: Bearer abc.def\" http://c/"),
            "exec:curl -H \"authorization: Bearer ***\" http://c/"
        );
        for s in [
            "",
            "://",
            "@",
            "?=",
            "&&==",
            "http://@",
            "a?pwd",
            "a?pwd=",
            "-u",
            "--password",
            "Authorization:",
            "authorization: ",
            "-p=",
            "'",
            "\"-u\" '",
        ] {
            let _ = redact(s);
        }
    }
}
