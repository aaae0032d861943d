#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! A smaller version of one frame: decode at the smaller size, encode. Bytes in, bytes out,
//! no I/O and no state, like the parser: unit-tested and fuzzed on its own.
//!
//! The sizes are the source's, 1/2, 1/4 and 1/8 ([`MAX_LEVEL`] halvings). A baseline JPEG
//! (what cameras send) is decoded straight at that size by [`crate::scaled_decode`] (DCT
//! scaling: the top-left corner of each block's coefficients, no full-size picture ever made);
//! anything else (a progressive JPEG) is decoded in full by `zune-jpeg` and each halving
//! averages 2x2 pixels. Either way the picture stays YCbCr (no colour conversion either way)
//! and [`crate::planar_encode`] encodes it from its planes as they are (chroma never widened to
//! be subsampled again). The figures that chose this, against ffmpeg on the same frames, are
//! in docs/sizes.md.
//!
//! The source frame's COM segments are copied into the smaller one: cameras put timestamps
//! there, the NO SIGNAL mark is one, and so are the benchmark's latency stamps.
//!
//! Hostile frames: the picture's size is read from its header and refused past
//! `max_pixels` before anything is allocated (so memory per call is bounded by the caller's
//! limit, not by what a frame claims); a frame that does not decode is an error, never a
//! panic (the codecs run under `catch_unwind`, a second line of defence: both are fuzzed
//! upstream, and ours fuzzes this function with the parser's corpus).

use crate::scaled_decode::{Planes, Refused};
use std::fmt;

/// Halvings at most: 1/8 of the source size, where a JPEG's 8x8 block becomes one pixel.
pub const MAX_LEVEL: u8 = 3;

/// Stack for a thread that runs [`shrink`]: the decoder keeps tables and blocks on the stack
/// (a debug build overflowed 128 KiB). Only the pages touched are ever resident.
pub const CODEC_STACK: usize = 1024 * 1024;

/// Default JPEG quality of a smaller size (`?quality=` chooses another).
pub const DEFAULT_QUALITY: u8 = 80;

/// The qualities a smaller size is made at: `?quality=` takes the nearest. A size is one
/// transcoder per (size, quality), so a few steps keep `?quality=1..6` from meaning six of
/// them; low, the default and high are what a viewer tells apart.
pub const QUALITY_STEPS: [u8; 3] = [50, DEFAULT_QUALITY, 95];

/// The step nearest to `asked` (a tie takes the higher).
pub fn quality_step(asked: u8) -> u8 {
    QUALITY_STEPS
        .into_iter()
        .min_by_key(|&s| (s.abs_diff(asked), std::cmp::Reverse(s)))
        .unwrap_or(DEFAULT_QUALITY)
}

/// Why a frame was not made smaller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShrinkError {
    /// No JPEG header with a size (SOF) was found.
    NoSize,
    /// Larger than the limit: `width`x`height`.
    TooLarge(u16, u16),
    /// The picture is too small to halve that often.
    TooSmall,
    /// The decoder or the encoder refused it.
    Codec(String),
}

impl fmt::Display for ShrinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShrinkError::NoSize => f.write_str("no picture size in the JPEG header"),
            ShrinkError::TooLarge(w, h) => write!(f, "{w}x{h} is larger than the decoding limit"),
            ShrinkError::TooSmall => f.write_str("too small for that size"),
            ShrinkError::Codec(e) => write!(f, "does not decode: {e}"),
        }
    }
}

/// What a frame gets when a codec panicked on it (contained by `catch_unwind`: a second line
/// of defence, never the first; `tests/parser_corpus.rs` holds every real capture to that).
pub const CODEC_PANIC: &str = "the codec failed on this frame";

/// `jpeg` at 1/2^`level` of its size (`level` 1 to [`MAX_LEVEL`]), encoded at `quality`
/// (1–100), with the source's COM segments. Refuses pictures of more than `max_pixels`.
pub fn shrink(
    jpeg: &[u8],
    level: u8,
    quality: u8,
    max_pixels: usize,
) -> Result<Vec<u8>, ShrinkError> {
    let picture = decode(jpeg, level, max_pixels)?;
    encode(&picture, quality, jpeg)
}

/// `jpeg` decoded at 1/2^`level` of its size (`level` 1 to [`MAX_LEVEL`]; a picture too small
/// for that is refused). Baseline pictures, what cameras send, are decoded straight at that
/// size ([`crate::scaled_decode`]); anything else (progressive, ...) in full and averaged down.
/// Refuses pictures of more than `max_pixels` before decoding.
pub fn decode(jpeg: &[u8], level: u8, max_pixels: usize) -> Result<Planes, ShrinkError> {
    let (w, h) = crate::jpeg::dimensions(jpeg).ok_or(ShrinkError::NoSize)?;
    if usize::from(w) * usize::from(h) > max_pixels {
        return Err(ShrinkError::TooLarge(w, h));
    }
    let level = level.clamp(1, MAX_LEVEL);
    if (w >> level) == 0 || (h >> level) == 0 {
        return Err(ShrinkError::TooSmall);
    }
    let scaled = std::panic::catch_unwind(|| crate::scaled_decode::decode(jpeg, level, max_pixels))
        .map_err(|_| ShrinkError::Codec(CODEC_PANIC.into()))?;
    match scaled {
        Ok(picture) => Ok(picture),
        Err(Refused::TooLarge(w, h)) => Err(ShrinkError::TooLarge(w, h)),
        // Not a kind ours decodes, or broken by its reading: the full decoder has its say.
        Err(Refused::Unsupported(_) | Refused::Bad(_)) => {
            // A USB webcam's frame has no Huffman tables: the standard ones, as decoders expect.
            let tabled = crate::jpeg::with_standard_tables(jpeg);
            let source = tabled.as_deref().unwrap_or(jpeg);
            let mut picture = std::panic::catch_unwind(|| decode_in_full(source, w, h))
                .map_err(|_| ShrinkError::Codec(CODEC_PANIC.into()))??;
            for _ in 0..level {
                picture = picture.halve();
            }
            Ok(picture)
        }
    }
}

/// `picture` as a JPEG at `quality` (1–100), with the COM segments of `source` (the frame it
/// was made from).
pub fn encode(picture: &Planes, quality: u8, source: &[u8]) -> Result<Vec<u8>, ShrinkError> {
    std::panic::catch_unwind(|| {
        crate::planar_encode::encode(picture, quality, crate::jpeg::comments(source))
    })
    .map_err(|_| ShrinkError::Codec(CODEC_PANIC.into()))
}

/// The whole picture, decoded by `zune-jpeg` (the long way, for what ours does not decode).
fn decode_in_full(jpeg: &[u8], w: u16, h: u16) -> Result<Planes, ShrinkError> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let codec = |e: &dyn fmt::Debug| ShrinkError::Codec(format!("{e:?}"));
    // The header's size is the limit: a frame cannot make the decoder allocate more than the
    // caller allowed for it.
    let options = DecoderOptions::default()
        .set_max_width(usize::from(w))
        .set_max_height(usize::from(h));
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(std::io::Cursor::new(jpeg), options);
    decoder.decode_headers().map_err(|e| codec(&e))?;
    // YCbCr out, no colour conversion either way; a grey picture stays grey.
    let out = match decoder.input_colorspace() {
        Some(ColorSpace::Luma) => ColorSpace::Luma,
        _ => ColorSpace::YCbCr,
    };
    decoder.set_options(options.jpeg_set_out_colorspace(out));
    let pixels = decoder.decode().map_err(|e| codec(&e))?;
    let (dw, dh) = decoder.dimensions().ok_or(ShrinkError::NoSize)?;
    let channels = match decoder.output_colorspace() {
        Some(ColorSpace::Luma) => 1,
        _ => 3,
    };
    if pixels.len() < dw * dh * channels {
        return Err(ShrinkError::Codec("short picture".into()));
    }
    Ok(Planes::from_interleaved(&pixels, dw, dh, channels))
}

thread_local! {
    /// Set on the threads that run the codec ([`as_codec_thread`]).
    static CODEC_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as a codec thread: a codec panic on it is contained and logged as a skipped
/// frame (`tiers::contain_codec_panics`), known by this mark and not by the thread's name.
pub fn as_codec_thread<T>(f: impl FnOnce() -> T) -> T {
    CODEC_THREAD.with(|c| c.set(true));
    f()
}

/// Whether this thread runs the codec.
pub fn is_codec_thread() -> bool {
    CODEC_THREAD.with(|c| c.get())
}

/// Pictures at least this large (a 4K or 1440p decode: 25 and 11 MB) get memory of their own
/// from the system and give it back when freed ([`set_up_allocator`]).
pub const OWN_MAPPING_FROM: usize = 8 << 20;

/// Sets the allocator up for decodes that come and go: glibc raises its mmap threshold to
/// the largest block freed (up to 32 MB), after which a 4K picture is taken from the thread's
/// arena, and freed memory at the top of a thread's arena is never handed back (`malloc_trim`
/// trims only the main arena's top): 24 sized snapshots of a 4K camera kept 32 MB for good.
/// A fixed threshold of [`OWN_MAPPING_FROM`] keeps those pictures in mappings of their own,
/// unmapped when freed; a fixed trim threshold (32 MB) keeps the smaller per-frame buffers
/// of a running size where they are, for the next frame. Call once, before any thread.
pub fn set_up_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters; called before other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

/// Freed memory back to the system. glibc keeps what a thread's arena freed for the next
/// allocation there, and a decode's picture is tens of megabytes that may not come again.
pub fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testjpeg::{jpeg_with_seq, seq_of};

    fn picture(w: u16, h: u16) -> Vec<u8> {
        let mut px = vec![0u8; usize::from(w) * usize::from(h) * 3];
        crate::source::testsrc::render(&mut px, w, h, 7);
        crate::source::testsrc::encode(&px, w, h).unwrap()
    }

    #[test]
    fn each_level_halves_and_keeps_the_comments() {
        let base = picture(640, 480);
        let tagged = crate::testjpeg::tagged(&base, b"42,1700000000000000", 0);
        for (level, w, h) in [(1u8, 320u16, 240u16), (2, 160, 120), (3, 80, 60)] {
            let small = shrink(&tagged, level, DEFAULT_QUALITY, 1 << 22).unwrap();
            assert_eq!(
                crate::jpeg::dimensions(&small),
                Some((w, h)),
                "level {level}"
            );
            assert_eq!(seq_of(&small), Some(42), "the COM stamp survives");
            assert!(small.len() < tagged.len());
            // What we made decodes again, at the size it says.
            let again = shrink(&small, 1, DEFAULT_QUALITY, 1 << 22).unwrap();
            assert_eq!(crate::jpeg::dimensions(&again), Some((w / 2, h / 2)));
        }
    }

    #[test]
    fn a_picture_that_claims_too_much_is_refused_before_decoding() {
        let base = picture(640, 480);
        assert_eq!(
            shrink(&base, 1, 80, 640 * 479),
            Err(ShrinkError::TooLarge(640, 480))
        );
        // A header claiming 65535x65535 with nothing behind it.
        let mut claim = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0xFF, 0xFF, 0xFF, 0xFF, 3];
        claim.extend_from_slice(&[1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
        assert!(matches!(
            shrink(&claim, 1, 80, 1 << 22),
            Err(ShrinkError::TooLarge(..))
        ));
        assert!(matches!(
            shrink(&claim, 1, 80, usize::MAX),
            Err(ShrinkError::Codec(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let good = picture(64, 48);
        assert!(shrink(&good, 1, 80, 1 << 20).is_ok());
        assert_eq!(
            shrink(&good, 4, 80, 1 << 20).map(|j| crate::jpeg::dimensions(&j)),
            Ok(Some((8, 6)))
        );
        assert_eq!(shrink(b"", 1, 80, 1 << 20), Err(ShrinkError::NoSize));
        let mut tiny = Vec::new();
        jpeg_encoder::Encoder::new(&mut tiny, 80)
            .encode(&[128; 16], 4, 4, jpeg_encoder::ColorType::Luma)
            .unwrap();
        assert_eq!(
            shrink(&tiny, 3, 80, 1 << 20).err(),
            Some(ShrinkError::TooSmall)
        );
        assert_eq!(
            shrink(&tiny, 1, 80, 1 << 20).map(|j| crate::jpeg::dimensions(&j)),
            Ok(Some((2, 2))),
            "grey pictures too"
        );
        // The numbered test frames the integration tests push are real pictures too.
        let numbered = shrink(&jpeg_with_seq(77, 10), 1, 80, 1 << 20).unwrap();
        assert_eq!(seq_of(&numbered), Some(77));
        // Every truncation and a run of corruptions of a real frame: no panic, bounded output.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for cut in (0..good.len()).step_by(7) {
            let _ = shrink(good.get(..cut).unwrap(), 1, 80, 1 << 20);
        }
        for _ in 0..300 {
            let mut bad = good.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % bad.len();
                bad[i] = (seed >> 32) as u8;
            }
            if let Ok(out) = shrink(&bad, 1, 80, 1 << 20) {
                assert!(out.len() < 1 << 20);
            }
        }
    }

    #[test]
    fn halving_averages_squares() {
        let px = [10u8, 20, 30, 40, 50, 60, 70, 80]; // 2x2, 2 channels
        let half = Planes::from_interleaved(&px, 2, 2, 2).halve();
        assert_eq!(
            (half.planes[0].px.clone(), half.planes[1].px.clone()),
            (vec![40], vec![50])
        );
        let odd = Planes::from_interleaved(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 3, 3, 1).halve();
        assert_eq!(odd.planes[0].px, vec![3]);
    }
}
