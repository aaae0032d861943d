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

/// The longest look back a request may ask for (`?ago=`, `?last=`, a `/clip`'s span): a day,
/// far past any history, but a number a `Duration` and a `SystemTime` can hold.
const MAX_LOOK_BACK: f64 = 86_400.0;

/// `?NAME=SECONDS`: finite, not negative, at most `max`; `Err` is the `400` text (negative,
/// NaN, infinite, huge and malformed values all land there).
fn seconds_param(query: &str, name: &str, max: f64) -> Result<Option<f64>, String> {
    match query_param(query, name).as_deref() {
        None => Ok(None),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=max).contains(&s) => Ok(Some(s)),
            _ => Err(format!(
                "?{name}={v} is not a number of seconds from 0 to {max}.\n"
            )),
        },
    }
}

/// Everything a `/stream` request asks in its query, read once, here: the handler and the
/// viewer get these fields, never the query text.
#[derive(Debug)]
pub(super) struct StreamAsk {
    /// `?fps=N`.
    pub fps_cap: Option<f64>,
    /// `?width=`, `?height=`, `?size=`, `?quality=`.
    pub size: SizeAsk,
    /// `?rewind=SECONDS`: replay that much of the history first.
    pub rewind: Option<f64>,
    /// `?page=0`: the raw stream even when a browser opens the URL as a document.
    pub raw: bool,
    /// `?advance_headers=1|0` (ustreamer's name): the part layout, over the User-Agent's.
    pub advance: Option<bool>,
}

/// A `/stream` request's query; `Err` is the `400` text.
pub(super) fn stream_ask(query: &str) -> Result<StreamAsk, String> {
    Ok(StreamAsk {
        fps_cap: fps_cap(query)?,
        size: size_ask(query)?,
        rewind: seconds_param(query, "rewind", MAX_LOOK_BACK)?,
        raw: query_param(query, "page").as_deref() == Some("0"),
        advance: match query_param(query, "advance_headers").as_deref() {
            Some("1") | Some("true") | Some("yes") => Some(true),
            Some("0") | Some("false") | Some("no") => Some(false),
            _ => None,
        },
    })
}

/// Which frame a `/snapshot` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Pick {
    /// The newest (waiting a little if there is none yet).
    Newest,
    /// `?ago=SECONDS`: the frame nearest to that long before the request.
    Ago(f64),
    /// `?fresh=1`: the first frame completed after the request arrived.
    Fresh,
}

pub(super) fn snapshot_pick(query: &str) -> Result<Pick, String> {
    let ago = seconds_param(query, "ago", MAX_LOOK_BACK)?;
    let fresh = match query_param(query, "fresh").as_deref() {
        None | Some("0") => false,
        Some("1") => true,
        Some(v) => return Err(format!("?fresh={v}: use ?fresh=1.\n")),
    };
    match (ago, fresh) {
        (Some(_), true) => Err("?ago= and ?fresh=1 ask for different frames: choose one.\n".into()),
        (Some(s), false) => Ok(Pick::Ago(s)),
        (None, true) => Ok(Pick::Fresh),
        (None, false) => Ok(Pick::Newest),
    }
}

/// What a `/clip` asks for: which frames, and in which form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ClipAsk {
    pub span: Span,
    /// `?format=multipart`: the frames as a finite `multipart/x-mixed-replace` body.
    pub multipart: bool,
}

/// Which frames of the history a request means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Span {
    /// `?last=SECONDS`: those that came in over the last SECONDS, by this relay's own clock
    /// (a camera whose clock is off still gives its last seconds).
    Last(f64),
    /// `?from=T&to=T`: those whose capture times (`X-Timestamp`, seconds since the epoch) are
    /// in that range, both ends included.
    Between(f64, f64),
}

/// `?last=SECONDS`, or `?from=T&to=T` in capture times (`to` defaults to now); `now` is the
/// request's time in seconds since the epoch.
pub(super) fn clip_ask(query: &str, now: f64) -> Result<ClipAsk, String> {
    let multipart = match query_param(query, "format").as_deref() {
        None | Some("avi") => false,
        Some("multipart") => true,
        Some(v) => return Err(format!("?format={v}: use avi or multipart.\n")),
    };
    let last = seconds_param(query, "last", MAX_LOOK_BACK)?;
    let from = seconds_param(query, "from", f64::from(u32::MAX))?;
    let to = seconds_param(query, "to", f64::from(u32::MAX))?;
    let (from, to) = match (last, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err("?last= or ?from=&to=, not both.\n".into())
        }
        (Some(l), None, None) => {
            return Ok(ClipAsk {
                span: Span::Last(l),
                multipart,
            })
        }
        (None, Some(f), t) => (f, t.unwrap_or(now)),
        (None, None, _) => {
            return Err(
                "/clip needs ?last=SECONDS, or ?from=T&to=T in seconds since the epoch (the \
                        X-Timestamp of a frame).\n"
                    .into(),
            )
        }
    };
    if to < from || to - from > MAX_LOOK_BACK {
        return Err(format!(
            "?from={from}&to={to}: from must not be after to, nor more than {MAX_LOOK_BACK} s \
             before it.\n"
        ));
    }
    Ok(ClipAsk {
        span: Span::Between(from, to),
        multipart,
    })
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

/// What size a viewer asks for (`?width=`, `?height=`, `?size=`, `?quality=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SizeAsk {
    pub fit: Fit,
    /// JPEG quality of a smaller size (the source size is passed through as it is).
    pub quality: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fit {
    /// The source's frames, untouched (no parameter, or `?size=full`).
    Source,
    /// The smallest size at or above `?width=` and `?height=` (either may be absent).
    AtLeast { width: u16, height: u16 },
    /// `?size=auto`: the largest size this viewer's link carries at the frame rate.
    Auto,
}

/// `?width=`, `?height=`, `?size=auto|full` and `?quality=`; `Err` is the `400` text.
pub(super) fn size_ask(query: &str) -> Result<SizeAsk, String> {
    let number = |name: &str, lo: u32, hi: u32| -> Result<Option<u32>, String> {
        match query_param(query, name) {
            None => Ok(None),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                _ => Err(format!("?{name}={v} is not a number from {lo} to {hi}.\n")),
            },
        }
    };
    let width = number("width", 1, 65_535)?;
    let height = number("height", 1, 65_535)?;
    let quality = number("quality", 1, 100)?.map_or(crate::scale::DEFAULT_QUALITY, |q| {
        crate::scale::quality_step(q as u8)
    });
    let fit = match (query_param(query, "size").as_deref(), width, height) {
        (Some("auto"), None, None) => Fit::Auto,
        (Some("auto"), ..) => {
            return Err(
                "?size=auto chooses the size itself: leave out ?width and ?height.\n".into(),
            )
        }
        (None | Some("full") | Some("source"), None, None) => Fit::Source,
        (None, w, h) => Fit::AtLeast {
            width: w.unwrap_or(0) as u16,
            height: h.unwrap_or(0) as u16,
        },
        (Some(other), ..) => {
            return Err(format!(
                "?size={other}: use ?size=auto, ?size=full, or ?width=N / ?height=N.\n"
            ))
        }
    };
    Ok(SizeAsk { fit, quality })
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

    #[test]
    fn sizes_asked_and_the_tier_at_or_above() {
        assert_eq!(size_ask("").unwrap().fit, Fit::Source);
        assert_eq!(size_ask("size=full").unwrap().fit, Fit::Source);
        assert_eq!(size_ask("size=auto").unwrap().fit, Fit::Auto);
        assert_eq!(
            size_ask("width=320&quality=60").unwrap(),
            SizeAsk {
                fit: Fit::AtLeast {
                    width: 320,
                    height: 0
                },
                quality: 50
            }
        );
        // Qualities come in three steps: six values cannot mean six transcoders.
        let q = |v: &str| size_ask(&format!("width=1&quality={v}")).unwrap().quality;
        assert_eq!((1..=6).map(|v| q(&v.to_string())).max(), Some(50));
        assert_eq!(
            [q("64"), q("65"), q("87"), q("88"), q("100")],
            [50, 80, 80, 95, 95]
        );
        for bad in [
            "width=0",
            "width=x",
            "height=70000",
            "quality=0",
            "quality=101",
            "size=auto&width=3",
            "size=big",
        ] {
            assert!(size_ask(bad).is_err(), "{bad}");
        }
    }
}
