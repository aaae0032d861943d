//! The sans-IO parser against arbitrary bytes. Run (from fuzz/):
//! `cargo +nightly fuzz run parser /tmp/fuzz-corpus corpus/parser` — new units go to the
//! first, scratch directory; the seeds in corpus/parser are real gstreamer and ffmpeg captures.
//!
//! Invariants checked on every input:
//! - no panic;
//! - the parser never holds more than the frame limit plus one header block plus the chunk
//!   being parsed;
//! - every frame it emits is a whole JPEG (FFD8 … FFD9) within the limit;
//! - the same bytes give the same frames whole and in any chunking (the first byte picks one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mjpeg_relay::parser::{Event, Parser, MAX_HEADER_BLOCK};

const LIMIT: usize = 4096;

fn run(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut p = Parser::new(LIMIT);
    let mut frames = Vec::new();
    for c in data.chunks(chunk) {
        p.push(c, &mut |e| {
            if let Event::Frame(f) = e {
                assert!(f.len() <= LIMIT, "frame over the limit");
                assert!(f.starts_with(&[0xFF, 0xD8]) && f.ends_with(&[0xFF, 0xD9]));
                frames.push(f);
            }
        });
        assert!(p.buffered() <= LIMIT + MAX_HEADER_BLOCK + c.len());
    }
    frames
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, data)) = input.split_first() else {
        return;
    };
    let whole = run(data, data.len().max(1));
    let chunk = usize::from(pick % 64) + 1;
    let chunked = run(data, chunk);
    assert_eq!(whole, chunked, "chunking of {chunk} changed the frames");
});
