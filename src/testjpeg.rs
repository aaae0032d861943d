//! Small real JPEGs that carry a sequence number, for tests, fuzz seeds and the benchmark.
//!
//! The number sits in a COM segment (`FFFE`) right after SOI, where every decoder ignores it,
//! so a receiver can check order, gaps and duplicates byte-exactly without decoding pixels.

use crate::jpeg::{comments, push_com};
use std::sync::OnceLock;

/// COM payload prefix that marks our sequence numbers.
const TAG: &[u8] = b"mjpeg-relay seq=";

/// A tiny valid baseline JPEG (8x8 grey), encoded once.
fn base() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut out = Vec::new();
        let pixels = [128u8; 8 * 8 * 3];
        jpeg_encoder::Encoder::new(&mut out, 80)
            .encode(&pixels, 8, 8, jpeg_encoder::ColorType::Rgb)
            .expect("encoding an 8x8 image cannot fail");
        out
    })
}

/// A valid JPEG carrying `seq`, padded with `pad` bytes of comment so frames vary in size.
pub fn jpeg_with_seq(seq: u64, pad: usize) -> Vec<u8> {
    jpeg_with_payload(format!("{seq}").as_bytes(), pad)
}

/// Like [`jpeg_with_seq`] but with any text after the tag.
pub fn jpeg_with_payload(text: &[u8], pad: usize) -> Vec<u8> {
    tagged(base(), text, pad)
}

/// `base` (a whole JPEG) with our tag and `text` in a comment right after SOI, and `pad`
/// bytes of comment: the benchmark's frames are this over a real picture, with a send time.
pub fn tagged(base: &[u8], text: &[u8], pad: usize) -> Vec<u8> {
    let mut com = TAG.to_vec();
    com.extend_from_slice(text);
    com.push(b';');
    // COM segments hold at most 65533 bytes; spread big pads over several.
    let (soi, rest) = base.split_at(2.min(base.len()));
    let mut out = Vec::with_capacity(base.len() + com.len() + pad + 16);
    out.extend_from_slice(soi);
    push_com(&mut out, &com);
    let mut left = pad;
    while left > 0 {
        let n = left.min(65_000);
        push_com(&mut out, &vec![b'.'; n]);
        left -= n;
    }
    out.extend_from_slice(rest);
    out
}

/// The text after the tag in the first of our COM segments before the scan, if any.
pub fn payload_of(jpeg: &[u8]) -> Option<&[u8]> {
    let rest = comments(jpeg).find_map(|c| c.strip_prefix(TAG))?;
    let end = rest.iter().position(|&b| b == b';')?;
    rest.get(..end)
}

/// The sequence number written by [`jpeg_with_seq`].
pub fn seq_of(jpeg: &[u8]) -> Option<u64> {
    let p = payload_of(jpeg)?;
    let text = std::str::from_utf8(p).ok()?;
    text.split(',').next()?.parse().ok()
}

/// True if `data` is one whole JPEG: SOI, at least one scan, EOI last, per the parser's walk.
pub fn is_whole_jpeg(data: &[u8]) -> bool {
    let mut p = crate::parser::Parser::new(data.len() + 16);
    let mut whole = false;
    p.push(data, &mut |e| {
        if let crate::parser::Event::Frame(f) = e {
            whole = f.len() == data.len();
        }
    });
    whole
}

/// `jpeg` without its DHT segments, as a UVC webcam sends MJPEG (the AVI1 convention): for the
/// tests of the standard tables. A picture whose header does not walk is returned as it came.
pub fn without_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg.get(..2).unwrap_or_default().to_vec();
    let mut i = 2;
    while jpeg.get(i) == Some(&0xFF) && jpeg.get(i + 1).is_some_and(|&m| m != 0xDA) {
        let Some(len) = jpeg
            .get(i + 2..i + 4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return jpeg.to_vec();
        };
        if jpeg.get(i + 1) != Some(&0xC4) {
            out.extend_from_slice(jpeg.get(i..i + 2 + len).unwrap_or_default());
        }
        i += 2 + len;
    }
    out.extend_from_slice(jpeg.get(i..).unwrap_or_default());
    out
}
