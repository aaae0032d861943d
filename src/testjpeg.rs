//! Small real JPEGs that carry a sequence number, for tests, fuzz seeds and the benchmark.
//!
//! The number sits in a COM segment (`FFFE`) right after SOI, where every decoder ignores it,
//! so a receiver can check order, gaps and duplicates byte-exactly without decoding pixels.

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

/// Like [`jpeg_with_seq`] but with any text after the tag (the benchmark adds a send time).
pub fn jpeg_with_payload(text: &[u8], pad: usize) -> Vec<u8> {
    let base = base();
    let mut com = TAG.to_vec();
    com.extend_from_slice(text);
    com.push(b';');
    // COM segments hold at most 65533 bytes; spread big pads over several.
    let mut out = Vec::with_capacity(base.len() + com.len() + pad + 16);
    out.extend_from_slice(&base[..2]);
    push_com(&mut out, &com);
    let mut left = pad;
    while left > 0 {
        let n = left.min(65_000);
        push_com(&mut out, &vec![b'.'; n]);
        left -= n;
    }
    out.extend_from_slice(&base[2..]);
    out
}

fn push_com(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The text after the tag in the first of our COM segments before the scan, if any.
pub fn payload_of(jpeg: &[u8]) -> Option<&[u8]> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    // Walk the marker segments that precede the first scan.
    while jpeg.get(i)? == &0xFF && jpeg.get(i + 1)? != &0xDA {
        let len = usize::from(u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]));
        let seg = jpeg.get(i + 4..i + 2 + len)?;
        if jpeg[i + 1] == 0xFE {
            if let Some(rest) = seg.strip_prefix(TAG) {
                let end = rest.iter().position(|&b| b == b';')?;
                return Some(&rest[..end]);
            }
        }
        i += 2 + len;
    }
    None
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
