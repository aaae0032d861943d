//! Making frames smaller (`mjpeg_relay::scale::shrink`, behind `?width=` and `?size=auto`)
//! against arbitrary bytes: whatever a camera sends, the transcoder of a size must get an
//! error or a picture, never a panic, a hang or an allocation beyond its limit. Run
//! `scripts/fuzz SECONDS scale` (nightly Rust and cargo-fuzz); seeded with the parser's
//! corpus (real gstreamer and ffmpeg captures), whose frames libFuzzer then mutates.
//!
//! The input is split into frames by the parser, as the relay does; the first byte picks the
//! size (1/2, 1/4, 1/8) and the decoding limit. Invariants on every frame:
//! - no panic escapes (`shrink` contains the codecs' own; a panic here is one of ours);
//! - a picture over the limit is refused before decoding;
//! - what comes out is a JPEG of exactly the size asked, carrying the source's comments,
//!   and smaller than the decoded picture could be.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mjpeg_relay::parser::{Event, Parser};
use mjpeg_relay::scale::{shrink, ShrinkError};

fuzz_target!(|input: &[u8]| {
    let [pick, data @ ..] = input else {
        return;
    };
    let level = 1 + pick % 3;
    let max_pixels = [64 * 64, 640 * 480, 1920 * 1080][usize::from(pick / 3) % 3];
    let mut frames = Vec::new();
    let mut parser = Parser::new(1 << 20);
    parser.push(data, &mut |e| {
        if let Event::Frame(f) = e {
            frames.push(f);
        }
    });
    if frames.is_empty() && data.starts_with(&[0xFF, 0xD8]) {
        frames.push(data.to_vec()); // a bare JPEG
    }
    for f in frames.iter().take(4) {
        let claimed = mjpeg_relay::jpeg::dimensions(f);
        match shrink(f, level, 80, max_pixels) {
            Ok(out) => {
                let (w, h) = claimed.expect("a picture without a size came out");
                assert!(usize::from(w) * usize::from(h) <= max_pixels, "limit not kept");
                assert_eq!(
                    mjpeg_relay::jpeg::dimensions(&out),
                    Some((w >> level, h >> level)),
                    "not the size asked"
                );
                assert!(out.starts_with(&[0xFF, 0xD8]) && out.ends_with(&[0xFF, 0xD9]));
                let coms_in = mjpeg_relay::jpeg::comments(f).count();
                assert_eq!(mjpeg_relay::jpeg::comments(&out).count(), coms_in, "comments");
                assert!(out.len() <= f.len() + usize::from(w >> level) * usize::from(h >> level) * 3 + 4096);
            }
            Err(ShrinkError::TooLarge(w, h)) => {
                assert!(usize::from(w) * usize::from(h) > max_pixels)
            }
            Err(_) => {}
        }
    }
});
