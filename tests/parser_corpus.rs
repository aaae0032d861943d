//! The fuzz target's invariants over its seed corpus (real gstreamer and ffmpeg captures, and
//! any crash input ever found, in fuzz/corpus/parser), in the normal suite on stable Rust:
//! every chunking gives the same frames, every frame is a whole JPEG within the limit, and the
//! parser never holds more than the limit plus one header block plus the chunk in hand.
//! The fuzzer itself: see fuzz/fuzz_targets/parser.rs and the README.

use mjpeg_relay::parser::{Event, Parser, MAX_HEADER_BLOCK};

fn run(data: &[u8], chunk: usize, limit: usize) -> Vec<Vec<u8>> {
    let mut p = Parser::new(limit);
    let mut frames = Vec::new();
    for c in data.chunks(chunk) {
        p.push(c, &mut |e| {
            if let Event::Frame(f) = e {
                assert!(f.len() <= limit);
                assert!(f.starts_with(&[0xFF, 0xD8]) && f.ends_with(&[0xFF, 0xD9]));
                assert!(f.capacity() <= f.len() + f.len() / 8 + 64, "frame capacity");
                frames.push(f);
            }
        });
        assert!(p.buffered() <= limit + MAX_HEADER_BLOCK + c.len());
        assert!(p.capacity() <= 2 * (limit + MAX_HEADER_BLOCK + c.len()) + 4096);
    }
    assert!(p.bytes_run() <= 3 * data.len() as u64 + 3, "not linear");
    frames
}

#[test]
fn corpus_keeps_the_fuzz_invariants() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/parser");
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        files += 1;
        for limit in [4096, 8 << 20] {
            let whole = run(&data, data.len().max(1), limit);
            for chunk in [1, 2, 3, 7, 64, 1000] {
                assert_eq!(
                    run(&data, chunk, limit),
                    whole,
                    "chunk {chunk}, limit {limit}"
                );
            }
        }
        // The real captures (*.mjpeg; a crash input added later may hold none) hold three
        // frames each at the default limit.
        if path.extension().is_some_and(|e| e == "mjpeg") {
            let frames = run(&data, data.len().max(1), 8 << 20);
            assert_eq!(frames.len(), 3, "{}", path.display());
        }
    }
    assert!(files >= 3);
}

/// The scale fuzz target's invariants over the same corpus (`fuzz/fuzz_targets/scale.rs`):
/// every frame of every capture, at every size, comes out at exactly that size with its
/// comments, or is refused with a reason; and so does each frame with bytes overwritten.
#[test]
fn corpus_frames_shrink_to_the_size_asked_or_fail_cleanly() {
    use mjpeg_relay::jpeg::{comments, dimensions};
    use mjpeg_relay::scale::shrink;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/parser");
    let mut shrunk = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        for f in run(&data, data.len().max(1), 8 << 20) {
            for level in 1..=3u8 {
                let made = shrink(&f, level, 80, 1 << 22);
                // The codec answers every frame itself: `shrink`'s catch_unwind is a second line
                // of defence, never the first (zune-jpeg 0.4 panicked on one of these seeds).
                assert_ne!(
                    made.as_ref().err(),
                    Some(&mjpeg_relay::scale::ShrinkError::Codec(
                        mjpeg_relay::scale::CODEC_PANIC.into()
                    ))
                );
                if let (Ok(out), Some((w, h))) = (made, dimensions(&f)) {
                    assert_eq!(dimensions(&out), Some((w >> level, h >> level)));
                    assert_eq!(comments(&out).count(), comments(&f).count());
                    shrunk += 1;
                }
            }
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            for _ in 0..50 {
                let mut bad = f.clone();
                for _ in 0..3 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let i = (seed as usize) % bad.len();
                    bad[i] = (seed >> 40) as u8;
                }
                let _ = shrink(&bad, 1 + (seed % 3) as u8, 80, 1 << 22);
            }
        }
    }
    assert!(shrunk >= 9, "the real captures shrink: {shrunk}");
}
