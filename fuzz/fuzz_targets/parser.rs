//! The sans-IO parser against arbitrary bytes. Run `scripts/fuzz [SECONDS]` (nightly Rust and
//! cargo-fuzz), which runs, from fuzz/:
//! `cargo +nightly fuzz run parser <scratch> corpus/parser -- -max_len=524288 -timeout=10`
//! New units go to the scratch directory; the seeds in corpus/parser are real gstreamer and
//! ffmpeg captures plus the nested broken part of the linear-time test.
//!
//! Invariants checked on every input:
//! - no panic;
//! - linear work: the parser runs at most three times as many bytes as it was given
//!   (`Parser::bytes_run`; a quadratic input fails here long before libFuzzer's timeout);
//! - the parser never holds more than the frame limit plus one header block plus the chunk
//!   being parsed, counted in bytes held *and* in capacity (what the process pays for: a
//!   claimed `Content-Length` must not reserve memory), and no frame holds much more than
//!   its length;
//! - every frame it emits is a whole JPEG (FFD8 … FFD9) within the limit;
//! - the same bytes give the same frames whole and in any chunking.
//!
//! The first input byte picks the frame limit (4 KiB, 64 KiB or 1 MiB) and the second, on its
//! own, the chunk size (1 to 64 bytes, 4 KiB or 64 KiB), so every limit is fuzzed with every
//! chunking (a large limit with tiny chunks too). The quadratic input that the first version
//! of this target could not find needs parts as large as the limit allows, and inputs up to
//! 512 KiB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mjpeg_relay::parser::{Event, Parser, MAX_HEADER_BLOCK};

fn run(data: &[u8], chunk: usize, limit: usize) -> Vec<Vec<u8>> {
    let mut p = Parser::new(limit);
    let mut frames = Vec::new();
    for c in data.chunks(chunk) {
        p.push(c, &mut |e| {
            if let Event::Frame(f) = e {
                assert!(f.len() <= limit, "frame over the limit");
                assert!(f.starts_with(&[0xFF, 0xD8]) && f.ends_with(&[0xFF, 0xD9]));
                assert!(f.capacity() <= f.len() + f.len() / 8 + 64, "frame capacity");
                frames.push(f);
            }
        });
        assert!(p.buffered() <= limit + MAX_HEADER_BLOCK + c.len());
        assert!(p.capacity() <= 2 * (limit + MAX_HEADER_BLOCK + c.len()) + 4096);
    }
    assert!(
        p.bytes_run() <= 3 * data.len() as u64 + 3,
        "work {} for {} bytes: not linear",
        p.bytes_run(),
        data.len()
    );
    frames
}

fuzz_target!(|input: &[u8]| {
    let [pick_limit, pick_chunk, data @ ..] = input else {
        return;
    };
    let limit = [4096, 64 << 10, 1 << 20][usize::from(*pick_limit) % 3];
    let whole = run(data, data.len().max(1), limit);
    let chunk = [usize::from(pick_chunk % 64) + 1, 4096, 65536][usize::from(pick_chunk >> 6) % 3];
    let chunked = run(data, chunk, limit);
    assert_eq!(whole, chunked, "chunking of {chunk} changed the frames");
});
