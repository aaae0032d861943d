#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! What a request's query says: decoded parameters, and `?fps=`, which every frame response
//! takes.

/// The value of `name` in a query string, decoded: `%XX` escapes (a malformed one is kept as
/// it is) and `+` for a space, as browsers encode forms and `URLSearchParams`.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode_component(k) == name).then(|| decode_component(v))
    })
}

/// `%XX` and `+` decoding of one query component; invalid UTF-8 becomes U+FFFD.
fn decode_component(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = tail
                    .get(..2)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        rest = tail.get(2..).unwrap_or_default();
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bounds of `?fps=`: one frame in 100 s, up to more than any camera sends.
const MIN_FPS: f64 = 0.01;
const MAX_FPS: f64 = 1000.0;

/// `?fps=N`: a client's frame rate cap (per camera on `/mux`). The source's rate is the natural
/// upper bound; bounded both ways so the interval is a sane Duration (`?fps=1e-300` would not
/// be one). `Err` is the `400` text.
pub(super) fn fps_cap(query: &str) -> Result<Option<f64>, String> {
    match query_param(query, "fps").as_deref() {
        None => Ok(None),
        Some(v) => match v.parse::<f64>() {
            Ok(f) if (MIN_FPS..=MAX_FPS).contains(&f) => Ok(Some(f)),
            _ => Err(format!(
                "?fps={v} is not a frame rate between {MIN_FPS} and {MAX_FPS}.\n"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let q = "token=ab%2Fc%2B%3D%3D&fps=5&x=a+b&bad=%zz%4&src=door";
        assert_eq!(query_param(q, "token").as_deref(), Some("ab/c+=="));
        assert_eq!(query_param(q, "fps").as_deref(), Some("5"));
        assert_eq!(query_param(q, "x").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=%+1", "a").as_deref(), Some("% 1"));
        assert_eq!(query_param(q, "none"), None);
        assert_eq!(query_param("%74oken=t", "token").as_deref(), Some("t"));
        assert_eq!(query_param("a=%FF", "a").as_deref(), Some("\u{FFFD}"));
    }
}
