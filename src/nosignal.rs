#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! The "NO SIGNAL" picture: when a stream's source has sent no frame for `--no-signal-after`
//! seconds, viewers get a generated JPEG about once a second saying so, with the stream's name
//! and how long ago the picture stopped.
//!
//! Without it a browser keeps showing the last frame, and nobody can tell a frozen camera from
//! a still scene. The frames go through the stream's slot like any other, so viewers need no
//! special handling and stay connected; the first real frame replaces the picture at once.
//! Generated frames are not counted as input (`/status` frames_in, fps and last-frame age stay
//! about the source) and carry a `mjpeg-relay no-signal` comment so programs can tell them apart.
//!
//! One watchdog thread serves every stream: it renders at most one small JPEG per stream per
//! second, and only while a source is down.

use crate::feed::SourceState;
use crate::font::{draw_text, fill, text_width};
use crate::shutdown::Shutdown;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// COM segment text in every generated frame.
pub const MARK: &[u8] = b"mjpeg-relay no-signal";

/// How often a still-down stream gets a fresh picture (the time-since-loss text changes).
const REFRESH: Duration = Duration::from_secs(1);
/// The watchdog thread's stack: it renders one small JPEG at a time, nothing recursive.
const WATCHDOG_STACK: usize = 256 * 1024;
/// How often the watchdog looks at the streams.
const TICK: Duration = Duration::from_millis(100);

/// Starts the watchdog for `streams`; it ends when `shutdown`'s sender is dropped.
pub fn start(
    streams: Arc<crate::hub::Streams>,
    after: Duration,
    shutdown: Shutdown,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("no-signal".into())
        .stack_size(WATCHDOG_STACK)
        .spawn(move || {
            // When each stream (by its address) last got a picture from us; the list can change
            // (SIGHUP), so it is kept to the streams of the moment.
            let mut last_sent: std::collections::HashMap<usize, Option<Instant>> =
                Default::default();
            loop {
                let streams = streams.get();
                last_sent.retain(|k, _| streams.iter().any(|s| Arc::as_ptr(s) as usize == *k));
                for stream in streams.iter() {
                    let last = last_sent.entry(Arc::as_ptr(stream) as usize).or_default();
                    let s = &stream.feed;
                    let state = s.source_info().state;
                    // On demand with nobody watching: no picture for nobody.
                    if state == SourceState::Idle {
                        *last = None;
                        continue;
                    }
                    // Started for someone who just came: say so at once, until the first frame.
                    let starting = s.starting.load(std::sync::atomic::Ordering::Relaxed);
                    if starting {
                        if last.is_none_or(|t| t.elapsed() >= REFRESH) {
                            let (w, h) = s.last_dimensions().unwrap_or((640, 480));
                            let frames_before =
                                s.stats.frames_in.load(std::sync::atomic::Ordering::SeqCst);
                            s.publish_generated(&render_starting(&s.name, w, h), frames_before);
                            *last = Some(Instant::now());
                        }
                        continue;
                    }
                    let down_for = s.last_frame_age().unwrap_or_else(|| s.created.elapsed());
                    if down_for < after.max(*stream.expected_gap.lock()) {
                        *last = None;
                        continue;
                    }
                    if last.is_some_and(|t| t.elapsed() < REFRESH) {
                        continue;
                    }
                    let frames_before = s.stats.frames_in.load(std::sync::atomic::Ordering::SeqCst);
                    let (w, h) = s.last_dimensions().unwrap_or((640, 480));
                    let had_frames = s.last_frame_age().is_some();
                    let jpeg = render(&s.name, down_for, had_frames, state, w, h);
                    s.publish_generated(&jpeg, frames_before);
                    *last = Some(Instant::now());
                }
                if shutdown.sleep(TICK) {
                    return;
                }
            }
        })?;
    Ok(())
}

/// The picture: dark grey, "NO SIGNAL", the stream name, and what happened how long ago.
pub fn render(
    name: &str,
    down_for: Duration,
    had_frames: bool,
    state: SourceState,
    w: u16,
    h: u16,
) -> Vec<u8> {
    let secs = down_for.as_secs();
    let since = if secs >= 3600 {
        format!("{}H {}M", secs / 3600, secs / 60 % 60)
    } else if secs >= 60 {
        format!("{}M {}S", secs / 60, secs % 60)
    } else {
        format!("{secs}S")
    };
    let detail = match (had_frames, state) {
        (_, SourceState::Ended) => format!("SOURCE ENDED {since} AGO"),
        (true, _) => format!("NO FRAME FOR {since}"),
        (false, _) => format!("WAITING FOR SOURCE {since}"),
    };
    picture(
        &[
            ("NO SIGNAL".to_string(), [230, 230, 230]),
            (name.to_uppercase(), [200, 200, 120]),
            (detail, [180, 180, 180]),
        ],
        w,
        h,
    )
}

/// The picture an `--on-demand` stream's viewer gets while its source starts.
pub fn render_starting(name: &str, w: u16, h: u16) -> Vec<u8> {
    picture(
        &[
            ("STARTING".to_string(), [230, 230, 230]),
            (name.to_uppercase(), [200, 200, 120]),
            ("CAMERA ON DEMAND".to_string(), [180, 180, 180]),
        ],
        w,
        h,
    )
}

/// Three centred lines, the first large, on dark grey; a marked JPEG.
fn picture(lines: &[(String, [u8; 3]); 3], w: u16, h: u16) -> Vec<u8> {
    // Cap the canvas: the text is what matters, and a 4K frame would take long to encode.
    let (w, h) = (
        usize::from(w.clamp(160, 1280)),
        usize::from(h.clamp(120, 720)),
    );
    let mut px = vec![0u8; w * h * 3];
    fill(&mut px, w, h, 0, 0, w, h, [40, 40, 40]);
    let big = (w / (9 * 6 + 4)).clamp(1, 8);
    let small = (big / 2).max(1);
    let mut y = (h / 2).saturating_sub((7 * big + 2 * (7 * small + 3 * small)) / 2);
    for (i, (text, colour)) in lines.iter().enumerate() {
        let scale = if i == 0 { big } else { small };
        let tw = text_width(text, scale).min(w);
        draw_text(&mut px, w, h, (w - tw) / 2, y, scale, text, *colour);
        y += 7 * scale + 3 * small;
        if i == 0 {
            y += 2 * small;
        }
    }
    let mut jpeg = Vec::with_capacity(w * h / 8);
    jpeg_encoder::Encoder::new(&mut jpeg, 70)
        .encode(&px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .expect("encoding into a Vec cannot fail");
    // The marker comment, right after SOI, where decoders ignore it.
    let mut com = Vec::with_capacity(MARK.len() + 4);
    crate::jpeg::push_com(&mut com, MARK);
    jpeg.splice(2..2, com);
    jpeg
}

/// Whether `jpeg` is a generated no-signal picture: its first header segment is a comment
/// holding [`MARK`]. Any bytes: an upstream's frame is checked on every `/status` and
/// `/snapshot`.
pub fn is_no_signal(jpeg: &[u8]) -> bool {
    crate::jpeg::segments(jpeg).next() == Some((crate::jpeg::COM, MARK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_is_a_marked_jpeg_of_the_asked_size() {
        let j = render(
            "cam-1",
            Duration::from_secs(75),
            true,
            SourceState::Lost,
            320,
            240,
        );
        assert!(crate::testjpeg::is_whole_jpeg(&j));
        assert!(is_no_signal(&j));
        assert_eq!(crate::jpeg::dimensions(&j), Some((320, 240)));
        let big = render(
            "x",
            Duration::ZERO,
            false,
            SourceState::Connecting,
            3840,
            2160,
        );
        assert_eq!(crate::jpeg::dimensions(&big), Some((1280, 720)));
        let tiny = render("x", Duration::ZERO, false, SourceState::Connecting, 8, 8);
        assert_eq!(crate::jpeg::dimensions(&tiny), Some((160, 120)));
        assert!(!is_no_signal(&crate::testjpeg::jpeg_with_seq(1, 0)));
    }

    #[test]
    fn any_bytes_are_safe_to_inspect() {
        // Issue 13: a 26-byte JPEG with a COM segment right after SOI made every /status and
        // /snapshot panic (the check sliced past the end).
        let mut short = vec![0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x16];
        short.extend_from_slice(&MARK[..18]);
        short.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(short.len(), 26);
        assert!(!is_no_signal(&short));
        assert_eq!(crate::jpeg::dimensions(&short), None);
        for n in 0..64 {
            let bytes: Vec<u8> = (0..n)
                .map(|i| [0xFF, 0xFE, 0xC0, 0x00, 0x05][i % 5])
                .collect();
            let _ = is_no_signal(&bytes);
            let _ = crate::jpeg::dimensions(&bytes);
        }
        assert_eq!(
            crate::jpeg::dimensions(&[0xFF, 0xD8, 0xFF, 0xC0, 0xFF, 0xFF]),
            None
        );
    }
}
