//! MJPEG in an AVI file (RIFF, AVI 1.0 with an `idx1` index): what every player, editor and
//! `ffprobe` opens. Sans-IO: given the frames' sizes and times it lays out the bytes *around*
//! them (the headers, each chunk's header and padding, the index), so the caller writes the
//! JPEGs themselves from the frames it already holds, while the file streams out: no second
//! copy of the history, and the length is known before the first byte.
//!
//! AVI has one frame rate. The frames keep their real timing this way: the rate is the
//! camera's (from the median interval between the frames), each frame goes into the slot of
//! its arrival time, and a slot no frame arrived in is an empty chunk (a player holds the
//! picture before it), as ffmpeg writes dropped frames.

/// One piece of the file: bytes of ours, or frame `i`'s JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Bytes(Vec<u8>),
    Frame(usize),
}

/// A frame as the layout needs it: its length and its arrival time (seconds, any origin).
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    pub len: usize,
    pub at: f64,
}

/// The file, in order, and its length. `width`/`height` from the first frame (0 if unknown:
/// players read the JPEGs' own).
pub fn layout(frames: &[FrameInfo], width: u16, height: u16) -> (Vec<Piece>, u64) {
    let rate = rate_of(frames);
    // Each frame's slot: its arrival in frame intervals, never before the previous one's next.
    let mut slots: Vec<usize> = Vec::with_capacity(frames.len());
    let t0 = frames.first().map_or(0.0, |f| f.at);
    for f in frames {
        let want = ((f.at - t0) * f64::from(rate)).round().max(0.0) as usize;
        let slot = slots.last().map_or(want, |&p| want.max(p + 1));
        slots.push(slot);
    }
    let total = slots.last().map_or(0, |&s| s + 1);
    let max_len = frames.iter().map(|f| f.len).max().unwrap_or(0) as u32;

    // movi: per slot an `00dc` chunk (header, data, pad to even); index entries point at them.
    let mut movi_len: u64 = 4; // "movi"
    let mut index = Vec::with_capacity(total * 16 + 8);
    index.extend_from_slice(b"idx1");
    index.extend_from_slice(&((total * 16) as u32).to_le_bytes());
    let chunk_at = |len: usize, index: &mut Vec<u8>, movi_len: &mut u64| {
        // Offsets are from the "movi" fourcc, as players expect.
        index.extend_from_slice(b"00dc");
        index.extend_from_slice(&0x10u32.to_le_bytes()); // AVIIF_KEYFRAME
        index.extend_from_slice(&(*movi_len as u32).to_le_bytes());
        index.extend_from_slice(&(len as u32).to_le_bytes());
        *movi_len += 8 + len as u64 + (len as u64 & 1);
    };
    let mut pieces = Vec::with_capacity(frames.len() * 2 + total + 2);
    let mut pending = Vec::new(); // bytes of ours not yet in a piece
    let mut next = 0;
    for (i, (f, &slot)) in frames.iter().zip(&slots).enumerate() {
        while next < slot {
            chunk_at(0, &mut index, &mut movi_len);
            pending.extend_from_slice(b"00dc\0\0\0\0");
            next += 1;
        }
        chunk_at(f.len, &mut index, &mut movi_len);
        pending.extend_from_slice(b"00dc");
        pending.extend_from_slice(&(f.len as u32).to_le_bytes());
        pieces.push(Piece::Bytes(std::mem::take(&mut pending)));
        pieces.push(Piece::Frame(i));
        if f.len % 2 == 1 {
            pending.push(0);
        }
        next = slot + 1;
    }
    pending.extend_from_slice(&index);
    pieces.push(Piece::Bytes(pending));

    let head = headers(
        rate,
        total as u32,
        max_len,
        (width, height),
        movi_len,
        index.len(),
    );
    pieces.insert(0, Piece::Bytes(head));
    let len = pieces
        .iter()
        .map(|p| match p {
            Piece::Bytes(b) => b.len() as u64,
            Piece::Frame(i) => frames[*i].len as u64,
        })
        .sum();
    (pieces, len)
}

/// The file's head: `RIFF`, the `hdrl` list (main and stream headers, the MJPG format) and the
/// start of the `movi` list of `movi_len` bytes, for `total` frame slots at `rate` per second,
/// followed by an index of `index_len` bytes.
fn headers(
    rate: u32,
    total: u32,
    max_len: u32,
    (width, height): (u16, u16),
    movi_len: u64,
    index_len: usize,
) -> Vec<u8> {
    let micros = 1_000_000 / rate;
    let mut head = Vec::with_capacity(224);
    let hdrl_len: u32 = 4 + (8 + 56) + (8 + 4 + (8 + 56) + (8 + 40));
    let riff_len = 4 + (8 + u64::from(hdrl_len)) + (8 + movi_len) + index_len as u64;
    head.extend_from_slice(b"RIFF");
    head.extend_from_slice(&(riff_len.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    head.extend_from_slice(b"AVI LIST");
    head.extend_from_slice(&hdrl_len.to_le_bytes());
    head.extend_from_slice(b"hdrlavih");
    head.extend_from_slice(&56u32.to_le_bytes());
    for v in [
        micros,                       // dwMicroSecPerFrame
        max_len.saturating_mul(rate), // dwMaxBytesPerSec
        0,                            // dwPaddingGranularity
        0x10,                         // dwFlags: AVIF_HASINDEX
        total,                        // dwTotalFrames
        0,                            // dwInitialFrames
        1,                            // dwStreams
        max_len + 8,                  // dwSuggestedBufferSize
        u32::from(width),
        u32::from(height),
        0,
        0,
        0,
        0,
    ] {
        head.extend_from_slice(&v.to_le_bytes());
    }
    head.extend_from_slice(b"LIST");
    head.extend_from_slice(&(4u32 + (8 + 56) + (8 + 40)).to_le_bytes());
    head.extend_from_slice(b"strlstrh");
    head.extend_from_slice(&56u32.to_le_bytes());
    head.extend_from_slice(b"vidsMJPG");
    for v in [
        0u32,        // dwFlags
        0,           // wPriority, wLanguage
        0,           // dwInitialFrames
        1,           // dwScale
        rate,        // dwRate: frames per second = rate / scale
        0,           // dwStart
        total,       // dwLength
        max_len + 8, // dwSuggestedBufferSize
        u32::MAX,    // dwQuality: default
        0,           // dwSampleSize: varies
    ] {
        head.extend_from_slice(&v.to_le_bytes());
    }
    for v in [0u16, 0, width, height] {
        head.extend_from_slice(&v.to_le_bytes()); // rcFrame
    }
    head.extend_from_slice(b"strf");
    head.extend_from_slice(&40u32.to_le_bytes());
    head.extend_from_slice(&40u32.to_le_bytes()); // biSize
    head.extend_from_slice(&i32::from(width).to_le_bytes());
    head.extend_from_slice(&i32::from(height).to_le_bytes());
    head.extend_from_slice(&1u16.to_le_bytes()); // biPlanes
    head.extend_from_slice(&24u16.to_le_bytes()); // biBitCount
    head.extend_from_slice(b"MJPG");
    head.extend_from_slice(&(u32::from(width) * u32::from(height) * 3).to_le_bytes());
    head.extend_from_slice(&[0u8; 16]);
    head.extend_from_slice(b"LIST");
    head.extend_from_slice(&(movi_len.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    head.extend_from_slice(b"movi");
    head
}

/// Frames per second for the slots: the inverse of the mean interval between frames, pauses
/// (over 2.5 times the median interval) left out. The mean, not the median: arrival jitter
/// moves single intervals and so the median, while a late frame's long interval and the next
/// one's short one still add up to two frame times. 1 to 120.
fn rate_of(frames: &[FrameInfo]) -> u32 {
    let mut gaps: Vec<f64> = frames
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .filter(|g| *g >= 0.0)
        .collect();
    if gaps.is_empty() {
        return 15;
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    let kept: Vec<f64> = gaps.into_iter().filter(|g| *g <= median * 2.5).collect();
    let mean = kept.iter().sum::<f64>() / kept.len().max(1) as f64;
    ((1.0 / mean).round() as u32).clamp(1, 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(frames: &[(Vec<u8>, f64)]) -> Vec<u8> {
        let info: Vec<FrameInfo> = frames
            .iter()
            .map(|(b, at)| FrameInfo {
                len: b.len(),
                at: *at,
            })
            .collect();
        let (pieces, len) = layout(&info, 64, 48);
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Bytes(b) => out.extend_from_slice(&b),
                Piece::Frame(i) => out.extend_from_slice(&frames[i].0),
            }
        }
        assert_eq!(out.len() as u64, len);
        out
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Walks the RIFF tree: every chunk's length lands on the next chunk, the index points at
    /// the frames, and RIFF's own length is the file's.
    #[test]
    fn the_riff_tree_is_consistent_and_the_index_points_at_the_frames() {
        let frames: Vec<(Vec<u8>, f64)> = (0..10u8)
            .map(|i| {
                (
                    vec![0xFF, 0xD8, i, 0xFF, 0xD9][..3 + usize::from(i % 3)].to_vec(),
                    f64::from(i) / 10.0,
                )
            })
            .collect();
        let f = file(&frames);
        assert_eq!(&f[0..4], b"RIFF");
        assert_eq!(u32_at(&f, 4) as usize, f.len() - 8);
        assert_eq!(&f[8..12], b"AVI ");
        // hdrl, then movi, then idx1, exactly tiling the file.
        let hdrl_len = u32_at(&f, 16) as usize;
        let movi_at = 12 + 8 + hdrl_len;
        assert_eq!(&f[movi_at..movi_at + 4], b"LIST");
        let movi_len = u32_at(&f, movi_at + 4) as usize;
        assert_eq!(&f[movi_at + 8..movi_at + 12], b"movi");
        let idx_at = movi_at + 8 + movi_len;
        assert_eq!(&f[idx_at..idx_at + 4], b"idx1");
        let idx_len = u32_at(&f, idx_at + 4) as usize;
        assert_eq!(idx_at + 8 + idx_len, f.len());
        // 10 fps, 10 frames at 0.1 s: ten slots, each a frame.
        assert_eq!(
            u32_at(&f, 12 + 8 + 4 + 8),
            100_000,
            "microseconds per frame"
        );
        assert_eq!(idx_len / 16, 10);
        for (k, (jpeg, _)) in frames.iter().enumerate() {
            let e = idx_at + 8 + k * 16;
            let off = u32_at(&f, e + 8) as usize;
            let len = u32_at(&f, e + 12) as usize;
            let chunk = movi_at + 8 + off;
            assert_eq!(&f[chunk..chunk + 4], b"00dc");
            assert_eq!(&f[chunk + 8..chunk + 8 + len], &jpeg[..]);
        }
    }

    #[test]
    fn a_gap_is_held_as_empty_chunks_at_the_frames_rate() {
        // 10 fps, then nothing for 0.5 s, then 10 fps again.
        let mut frames: Vec<(Vec<u8>, f64)> = (0..5)
            .map(|i| (vec![0xFF, 0xD8, 0xFF, 0xD9], f64::from(i) / 10.0))
            .collect();
        frames.extend((0..5).map(|i| (vec![0xFF, 0xD8, 0xFF, 0xD9], 0.9 + f64::from(i) / 10.0)));
        let f = file(&frames);
        let (pieces, _) = layout(
            &frames
                .iter()
                .map(|(b, at)| FrameInfo {
                    len: b.len(),
                    at: *at,
                })
                .collect::<Vec<_>>(),
            0,
            0,
        );
        assert_eq!(
            pieces
                .iter()
                .filter(|p| matches!(p, Piece::Frame(_)))
                .count(),
            10
        );
        // dwTotalFrames: 14 slots (0.0 … 1.3 s at 10 fps), four of them empty.
        assert_eq!(u32_at(&f, 12 + 8 + 4 + 8 + 16), 14);
    }

    #[test]
    fn the_rate_is_the_cameras_through_jitter() {
        // 15 fps, each arrival up to 20 ms early or late.
        let frames: Vec<FrameInfo> = (0..45u32)
            .map(|i| FrameInfo {
                len: 10,
                at: f64::from(i) / 15.0 + f64::from((i * 7919) % 41) / 1000.0 - 0.02,
            })
            .collect();
        assert_eq!(rate_of(&frames), 15);
    }

    #[test]
    fn no_frames_and_one_frame_make_valid_files() {
        let f = file(&[]);
        assert_eq!(u32_at(&f, 4) as usize, f.len() - 8);
        let f = file(&[(vec![0xFF, 0xD8, 1, 0xFF, 0xD9], 5.0)]);
        assert_eq!(u32_at(&f, 4) as usize, f.len() - 8);
    }
}
