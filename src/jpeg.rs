#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! What the relay knows of the JPEG format, in one place: the marker walk that finds where an
//! image ends in a byte stream ([`Walker`], used by the parser), the header segments before the
//! first scan ([`segments`]: dimensions for the NO SIGNAL picture, the comments that mark
//! generated pictures and test frames), and writing a comment ([`push_com`]).
//!
//! It reads network bytes, so like the parser it never indexes directly (the lint above).

use memchr::memchr;

/// Result of walking a slice of a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Everything consumed; the image is not finished.
    More,
    /// The image ended; `n` bytes of the slice (through the EOI) belong to it.
    Done(usize),
    /// Byte `at` cannot be part of a JPEG here. `after_ff`: it was a marker code (the byte
    /// before it was `FF`), so a raw stream can resync at it if it is `D8`.
    Error { at: usize, after_ff: bool },
}

/// Incremental walk over JPEG markers. Knows just enough of the format to find where an image
/// ends: every marker segment has a 16-bit length, entropy-coded data is escaped so that `FF`
/// is followed only by `00` or a restart marker, and `EOI` ends the image.
#[derive(Debug, Clone, Default)]
pub(crate) struct Walker {
    st: WalkState,
    marker: u8,
    len_hi: u8,
    skip: usize,
    saw_scan: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum WalkState {
    #[default]
    Soi0,
    Soi1,
    /// Expecting the `FF` that starts the next marker.
    Marker,
    /// Saw `FF`; expecting a marker code (more `FF`s are fill bytes).
    Code,
    Len0,
    Len1,
    /// Inside a segment's payload.
    Skip,
    /// Inside entropy-coded scan data.
    Entropy,
    /// Saw `FF` inside scan data.
    EntropyFf,
}

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;

impl Walker {
    /// Walks the next slice of the image; see [`Walk`].
    pub(crate) fn walk(&mut self, data: &[u8]) -> Walk {
        let mut i = 0;
        while i < data.len() {
            let Some(&b) = data.get(i) else { break };
            match self.st {
                WalkState::Soi0 => {
                    if b != 0xFF {
                        return Walk::Error {
                            at: i,
                            after_ff: false,
                        };
                    }
                    self.st = WalkState::Soi1;
                }
                WalkState::Soi1 => {
                    if b != SOI {
                        return Walk::Error {
                            at: i,
                            after_ff: true,
                        };
                    }
                    self.st = WalkState::Marker;
                }
                WalkState::Marker => {
                    if b != 0xFF {
                        return Walk::Error {
                            at: i,
                            after_ff: false,
                        };
                    }
                    self.st = WalkState::Code;
                }
                WalkState::Code | WalkState::EntropyFf => {
                    let in_scan = self.st == WalkState::EntropyFf;
                    match b {
                        0xFF => {} // fill byte
                        0x00 if in_scan => self.st = WalkState::Entropy,
                        0xD0..=0xD7 if in_scan => self.st = WalkState::Entropy,
                        0xD0..=0xD7 | 0x01 => self.st = WalkState::Marker,
                        EOI => return Walk::Done(i + 1),
                        SOI | 0x00 => {
                            return Walk::Error {
                                at: i,
                                after_ff: true,
                            }
                        }
                        _ => {
                            self.marker = b;
                            self.st = WalkState::Len0;
                        }
                    }
                }
                WalkState::Len0 => {
                    self.len_hi = b;
                    self.st = WalkState::Len1;
                }
                WalkState::Len1 => {
                    let len = (usize::from(self.len_hi) << 8) | usize::from(b);
                    if len < 2 {
                        return Walk::Error {
                            at: i,
                            after_ff: false,
                        };
                    }
                    self.skip = len - 2;
                    self.st = WalkState::Skip;
                    if self.skip == 0 {
                        self.end_segment();
                    }
                }
                WalkState::Skip => {
                    let n = self.skip.min(data.len() - i);
                    self.skip -= n;
                    i += n;
                    if self.skip == 0 {
                        self.end_segment();
                    }
                    continue;
                }
                WalkState::Entropy => match memchr(0xFF, from(data, i)) {
                    Some(j) => {
                        i += j;
                        self.st = WalkState::EntropyFf;
                    }
                    None => return Walk::More,
                },
            }
            i += 1;
        }
        Walk::More
    }

    /// Whether the image had a scan (SOS): an image without one is not a picture.
    pub(crate) fn saw_scan(&self) -> bool {
        self.saw_scan
    }

    fn end_segment(&mut self) {
        if self.marker == SOS {
            self.saw_scan = true;
            self.st = WalkState::Entropy;
        } else {
            self.st = WalkState::Marker;
        }
    }
}

/// `data[i..]`, empty past the end.
fn from(data: &[u8], i: usize) -> &[u8] {
    data.get(i..).unwrap_or_default()
}

/// The marker segments of `jpeg` before its first scan, as (marker, payload), in order. Ends
/// at SOS, at anything that is not a marker, or at the end of the bytes; never panics.
pub fn segments(jpeg: &[u8]) -> Segments<'_> {
    let ok = jpeg.get(..2) == Some(&[0xFF, SOI][..]);
    Segments {
        jpeg,
        i: if ok { 2 } else { jpeg.len() },
    }
}

/// See [`segments`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    jpeg: &'a [u8],
    i: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let mut seg = self.jpeg.get(self.i..)?;
        // Fill bytes (extra FFs) may precede a marker code.
        while seg.first() == Some(&0xFF) && seg.get(1) == Some(&0xFF) {
            seg = from(seg, 1);
            self.i = self.i.checked_add(1)?;
        }
        let (&ff, &marker) = (seg.first()?, seg.get(1)?);
        if ff != 0xFF || marker == SOS || marker == EOI {
            self.i = self.jpeg.len();
            return None;
        }
        let len = usize::from(u16::from_be_bytes([*seg.get(2)?, *seg.get(3)?]));
        let Some(payload) = len.checked_sub(2).and_then(|n| seg.get(4..4 + n)) else {
            self.i = self.jpeg.len();
            return None;
        };
        self.i = self.i.checked_add(2 + len)?;
        Some((marker, payload))
    }
}

/// Width and height from the SOF segment, if the header has one.
pub fn dimensions(jpeg: &[u8]) -> Option<(u16, u16)> {
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    let (_, sof) = segments(jpeg)
        .find(|(m, _)| (0xC0..=0xCF).contains(m) && ![0xC4, 0xC8, 0xCC].contains(m))?;
    let h = u16::from_be_bytes([*sof.get(1)?, *sof.get(2)?]);
    let w = u16::from_be_bytes([*sof.get(3)?, *sof.get(4)?]);
    (w > 0 && h > 0).then_some((w, h))
}

/// The payloads of the COM segments before the first scan.
pub fn comments(jpeg: &[u8]) -> impl Iterator<Item = &[u8]> {
    segments(jpeg).filter_map(|(m, p)| (m == COM).then_some(p))
}

/// Appends a COM segment holding `payload` (at most 65533 bytes; longer is cut).
pub fn push_com(out: &mut Vec<u8>, payload: &[u8]) {
    let payload = payload.get(..65_533).unwrap_or(payload);
    out.extend_from_slice(&[0xFF, COM]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The comment marker.
pub const COM: u8 = 0xFE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_segments_of_any_bytes() {
        let mut j = vec![0xFF, 0xD8];
        push_com(&mut j, b"hello");
        j.extend_from_slice(&[0xFF, 0xFF, 0xC0, 0x00, 0x0B, 8, 0x00, 0x78, 0x00, 0xA0]);
        j.extend_from_slice(&[3, 0, 0, 0]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0xD9]);
        let segs: Vec<_> = segments(&j).collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(comments(&j).collect::<Vec<_>>(), [&b"hello"[..]]);
        assert_eq!(dimensions(&j), Some((160, 120)));
        // Every prefix and some junk: no panic, nothing invented.
        for n in 0..j.len() {
            let _ = dimensions(&j[..n]);
            let _ = comments(&j[..n]).count();
        }
        assert_eq!(segments(b"not a jpeg").count(), 0);
        assert_eq!(dimensions(&[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x01]), None);
    }
}
