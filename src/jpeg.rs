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
/// Define Huffman tables.
const DHT: u8 = 0xC4;

/// The example Huffman tables of the JPEG standard (ITU T.81 Annex K.3), which a decoder
/// is expected to use when a frame defines none: most USB webcams (UVC) send MJPEG frames
/// without them, the AVI1 convention. (class and id, code counts by length, values.)
pub(crate) const K3_TABLES: [(u8, [u8; 16], &[u8]); 4] = [
    (
        0x00,
        [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    ),
    (
        0x10,
        [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D],
        &[
            0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51,
            0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1,
            0x15, 0x52, 0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18,
            0x19, 0x1A, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39,
            0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57,
            0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75,
            0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92,
            0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
            0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
            0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8,
            0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2,
            0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
        ],
    ),
    (
        0x01,
        [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    ),
    (
        0x11,
        [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
        &[
            0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07,
            0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09,
            0x23, 0x33, 0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25,
            0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38,
            0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56,
            0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74,
            0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
            0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
            0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA,
            0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6,
            0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2,
            0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
        ],
    ),
];

/// `jpeg` with the standard Huffman tables ([`K3_TABLES`]) put in right before its first
/// scan, when it is a Huffman-coded picture (a baseline, extended or progressive frame header
/// first) whose header defines none (a USB webcam's frame): what a decoder needs, and what
/// makes a saved snapshot a standalone JPEG every program opens. `None` when it has tables of
/// its own, no such frame header, or no scan to put them before: anything else is left as it
/// came. Any bytes: linear, never panics.
pub fn with_standard_tables(jpeg: &[u8]) -> Option<Vec<u8>> {
    if jpeg.get(..2) != Some(&[0xFF, SOI][..]) {
        return None;
    }
    let mut i = 2usize;
    let mut huffman_frame = false;
    loop {
        while jpeg.get(i) == Some(&0xFF) && jpeg.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if jpeg.get(i) != Some(&0xFF) {
            return None;
        }
        match *jpeg.get(i + 1)? {
            DHT | EOI => return None,
            SOS if huffman_frame => break,
            SOS => return None,
            // SOF0, SOF1, SOF2: baseline, extended sequential, progressive, Huffman-coded.
            0xC0..=0xC2 => huffman_frame = true,
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]));
        if len < 2 {
            return None;
        }
        i = i.checked_add(2 + len)?;
    }
    let tables: usize = K3_TABLES.iter().map(|(_, _, v)| 17 + v.len()).sum();
    let mut out = Vec::with_capacity(jpeg.len() + tables + 4);
    out.extend_from_slice(jpeg.get(..i)?);
    out.extend_from_slice(&[0xFF, DHT]);
    out.extend_from_slice(&((tables + 2) as u16).to_be_bytes());
    for (class_id, counts, values) in K3_TABLES {
        out.push(class_id);
        out.extend_from_slice(&counts);
        out.extend_from_slice(values);
    }
    out.extend_from_slice(jpeg.get(i..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables' counts add up to their values (a typo in a table would not).
    #[test]
    fn the_standard_tables_are_whole_and_go_before_the_scan() {
        for (_, counts, values) in K3_TABLES {
            let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
            assert_eq!(n, values.len());
        }
        let mut j = vec![0xFF, 0xD8];
        push_com(&mut j, b"cam");
        let no_frame_header = [&j[..], &[0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0xD9]].concat();
        j.extend_from_slice(&[
            0xFF, 0xC0, 0x00, 0x0B, 8, 0x00, 0x78, 0x00, 0xA0, 1, 1, 0x11, 0,
        ]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xD9]);
        let fixed = with_standard_tables(&j).unwrap();
        assert_eq!(fixed.len(), j.len() + 4 + 4 * 17 + 2 * 12 + 2 * 162);
        let markers: Vec<u8> = segments(&fixed).map(|(m, _)| m).collect();
        assert_eq!(markers, [COM, 0xC0, DHT]);
        // Not a picture (no frame header): left as it came.
        assert_eq!(with_standard_tables(&no_frame_header), None);
        assert!(fixed.ends_with(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xD9]));
        // It has tables now: nothing more to do; and any prefix or junk: no panic.
        assert_eq!(with_standard_tables(&fixed), None);
        for n in 0..fixed.len() {
            let _ = with_standard_tables(&fixed[..n]);
            let _ = with_standard_tables(&j[..n.min(j.len())]);
        }
        assert_eq!(with_standard_tables(b"not a jpeg"), None);
    }

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
