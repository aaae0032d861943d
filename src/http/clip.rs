//! `/clip`: the last seconds of a stream as a file to keep: an AVI (MJPEG in RIFF with an
//! index; every player, editor and `ffprobe` opens it) or, with `?format=multipart`, the same
//! frames as a finite `multipart/x-mixed-replace` body for programs.
//!
//! The frames are the history's own (`Arc`s taken under its lock, [`crate::history`]); the
//! response is our few header bytes around them ([`crate::avi`]), written piece by piece as
//! it streams out: no second copy, and its length known before the first byte. A clip keeps
//! its frames alive while it is written, even those the ring has dropped meanwhile, so at most
//! [`MAX_CLIPS`] are written at once (more get `503`), and a reader that stops is dropped at
//! `--send-timeout` like a viewer. `?width=` makes each frame smaller with the code a size's
//! transcoder runs (the history holds the camera's frames only), on one codec thread, before
//! the first byte.

use super::conn::{Body, Request, Response};
use super::date::{epoch_seconds, file_stamp};
use super::endpoints::FrameBody;
use super::query::{clip_ask, size_ask, Fit, Span};
use super::shrink::Refused;
use super::sizing::at_least;
use super::{send, text, Shared};
use crate::frame::Frame;
use crate::hub::Stream;
use crate::multipart::{BOUNDARY, FRAMED_OPENING};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Clips being written at once, over all streams.
pub const MAX_CLIPS: usize = 4;

/// A place among the [`MAX_CLIPS`]; given back on drop.
struct ClipSlot<'a>(&'a AtomicUsize);

impl<'a> ClipSlot<'a> {
    fn take(count: &'a AtomicUsize) -> Option<ClipSlot<'a>> {
        if count.fetch_add(1, SeqCst) >= MAX_CLIPS {
            count.fetch_sub(1, SeqCst);
            return None;
        }
        Some(ClipSlot(count))
    }
}

impl Drop for ClipSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

type Piece = Arc<dyn AsRef<[u8]> + Send + Sync>;

pub(super) fn serve_clip(rq: Request, stream: &Stream, query: &str, shared: &Shared) {
    let now = SystemTime::now();
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let ask = match clip_ask(query, now_s) {
        Ok(a) => a,
        Err(msg) => return send(rq, text(400, &msg), shared),
    };
    let name = &stream.name;
    let Some(history) = stream.feed.history.get() else {
        let msg = format!("Stream '{name}' keeps no history (--history 0): no clip to give.\n");
        return send(rq, text(404, &msg), shared);
    };
    let Some(_slot) = ClipSlot::take(&shared.clips) else {
        let msg = format!("{MAX_CLIPS} clips are being written already; try again shortly.\n");
        return send(rq, text(503, &msg).with_header("Retry-After", "5"), shared);
    };
    let frames = match ask.span {
        Span::Last(secs) => history.since(
            Instant::now()
                .checked_sub(Duration::from_secs_f64(secs))
                .unwrap_or_else(|| history.span().map_or(Instant::now(), |(o, _)| o.arrived_at)),
        ),
        // In whole microseconds, as X-Timestamp writes them: `from` and `to` copied from two
        // part headers take those frames (through a float, `S.868620` can come out a tenth
        // of a microsecond late and miss the frame it named).
        Span::Between(from, to) => history.between(micros(from), micros(to)),
    };
    if frames.is_empty() {
        let reach = match history.span() {
            Some((oldest, newest)) => format!(
                "it holds X-Timestamp {} to {}",
                epoch_seconds(oldest.arrived),
                epoch_seconds(newest.arrived)
            ),
            None => "it holds no frame yet".into(),
        };
        let asked = match ask.span {
            Span::Last(secs) => format!("the last {secs} s"),
            Span::Between(from, to) => format!("{from} to {to}"),
        };
        let msg = format!("No frame of '{name}' arrived in that time ({asked}); {reach}.\n");
        return send(rq, text(404, &msg), shared);
    }
    // ?width=/?height=: each frame made smaller by the code the size's transcoder runs, one
    // at a time on a codec thread, before the first byte (the AVI needs every size first).
    let frames = match sized(&frames, query, shared) {
        Ok(f) => f,
        Err(resp) => return send(rq, resp, shared),
    };
    let Some(first) = frames.first() else {
        let msg = format!("No frame of '{name}' could be made smaller.\n");
        return send(rq, text(503, &msg), shared);
    };
    let stamp = file_stamp(first.arrived);
    let count = frames.len().to_string();
    let (pieces, content_type, ext) = if ask.multipart {
        (
            multipart(&frames),
            format!("multipart/x-mixed-replace;boundary={BOUNDARY}"),
            "mjpeg",
        )
    } else {
        (avi(&frames), "video/x-msvideo".to_string(), "avi")
    };
    let resp = Response::new(200, Body::Pieces(pieces))
        .with_header("Content-Type", &content_type)
        .with_header(
            "Content-Disposition",
            &format!("attachment; filename={name}-{stamp}.{ext}"),
        )
        .with_header("X-Frames", &count)
        .no_cache();
    send(rq, resp, shared);
}

/// The frames at the size the query asks (`?width=`, `?height=`, `?quality=`): the same
/// frames when it asks none or the camera's own; `Err` is the answer instead (`400` for the
/// query, `503` when no codec place came free).
fn sized(frames: &[Arc<Frame>], query: &str, shared: &Shared) -> Result<Vec<Arc<Frame>>, Response> {
    let size = size_ask(query).map_err(|msg| text(400, &msg))?;
    match size.fit {
        Fit::Source => return Ok(frames.to_vec()),
        Fit::Auto => {
            let msg = "?size=auto follows a viewer's link; a clip is a file: ask ?width= or \
                       ?height=.\n";
            return Err(text(400, msg));
        }
        Fit::AtLeast { .. } => {}
    }
    let dims = frames
        .first()
        .and_then(|f| crate::jpeg::dimensions(f.jpeg()));
    let Some(size) = dims.map(|d| at_least(size, d)).filter(|s| s.level > 0) else {
        return Ok(frames.to_vec());
    };
    let limit = shared.cfg.tier_max_pixels;
    let made = shared.one_offs.run("clip-size", || {
        frames
            .iter()
            .filter_map(|f| {
                let small = crate::scale::shrink(f.jpeg(), size.level, size.quality, limit).ok()?;
                Some(Arc::new(Frame::derived(&small, f)))
            })
            .collect::<Vec<_>>()
    });
    made.map_err(|e| match e {
        Refused::Busy => text(
            503,
            "Too many smaller pictures are being made; try again shortly.\n",
        )
        .with_header("Retry-After", "1"),
        Refused::Shrink(e) => text(503, &format!("The codec failed on this clip: {e}.\n")),
    })
}

/// The frames as an AVI file: our bytes around their JPEGs.
fn avi(frames: &[Arc<Frame>]) -> Vec<Piece> {
    let t0 = frames.first().map(|f| f.arrived_at);
    let info: Vec<crate::avi::FrameInfo> = frames
        .iter()
        .map(|f| crate::avi::FrameInfo {
            len: f.jpeg().len(),
            at: t0.map_or(0.0, |t| {
                f.arrived_at.saturating_duration_since(t).as_secs_f64()
            }),
        })
        .collect();
    let (w, h) = frames
        .first()
        .and_then(|f| crate::jpeg::dimensions(f.jpeg()))
        .unwrap_or((0, 0));
    let (layout, _) = crate::avi::layout(&info, w, h);
    layout
        .into_iter()
        .filter_map(|p| match p {
            crate::avi::Piece::Bytes(b) => Some(Arc::new(b) as Piece),
            crate::avi::Piece::Frame(i) => frames
                .get(i)
                .map(|f| Arc::new(FrameBody(f.clone())) as Piece),
        })
        .collect()
}

/// The frames as a finite multipart body: each part with its `Content-Length` and
/// `X-Timestamp` (as `/stream` sends them), the boundary between, and the closing one.
fn multipart(frames: &[Arc<Frame>]) -> Vec<Piece> {
    let between: Piece = Arc::new(format!("\r\n--{BOUNDARY}\r\n").into_bytes());
    let mut pieces: Vec<Piece> = Vec::with_capacity(frames.len() * 2 + 1);
    pieces.push(Arc::new(FRAMED_OPENING));
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            pieces.push(between.clone());
        }
        pieces.push(Arc::new(Part(f.clone())));
    }
    pieces.push(Arc::new(format!("\r\n--{BOUNDARY}--\r\n").into_bytes()));
    pieces
}

/// A frame's part: its headers and the JPEG.
struct Part(Arc<Frame>);

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        self.0.wire.part()
    }
}

/// Seconds since the epoch (at most `u32::MAX`, six decimals exact in an `f64`: 2^52 µs is
/// 142 years) as whole microseconds.
fn micros(seconds: f64) -> u64 {
    (seconds * 1e6).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time copied from `X-Timestamp` names its frame for every microsecond of a second in
    /// 2026, whatever the nanoseconds below it; the float route this replaced missed some
    /// (the control: a frame at `S.ffffff050` excluded by `from=S.ffffff`).
    #[test]
    fn an_x_timestamp_read_back_is_the_frames_microsecond() {
        let base = 1_796_377_855u64;
        let mut float_misses = 0;
        for us in 0..1_000_000u64 {
            let arrived = UNIX_EPOCH + Duration::from_nanos((base * 1_000_000 + us) * 1000 + 50);
            let frame = Frame {
                arrived,
                ..Frame::new(b"")
            };
            let said: f64 = epoch_seconds(arrived).parse().unwrap();
            assert_eq!(micros(said), frame.captured_micros(), "{us}");
            if UNIX_EPOCH + Duration::from_secs_f64(said) > arrived {
                float_misses += 1;
            }
        }
        assert!(
            float_misses > 0,
            "the control found no time the float route misses"
        );
    }
}
