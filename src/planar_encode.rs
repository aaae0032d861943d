#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! A decoded picture's planes as a baseline JPEG: planes in, bytes out, no I/O, like the
//! decoder that makes them ([`crate::scaled_decode`]).
//!
//! Why our own encoder: `jpeg-encoder` (still used for the test pattern) takes a picture a row
//! at a time with every component at full width, so a subsampled chroma plane had to be
//! widened for it, and it subsampled it again, copying each block twice before its transform;
//! of a 1280x720 frame's trip to 1/2 the encoding was 1.3 of 2.3 ms, more than the decoding.
//! Here each block is read straight from the plane it is in (chroma at its own resolution),
//! transformed by the float AAN DCT (libjpeg's `jfdctflt`) written eight lanes at a time, so
//! that the compiler vectorizes it on x86 and NEON alike with no `unsafe`, quantized with the
//! transform's scale folded into one multiply per coefficient, and Huffman-coded by the bit
//! mask of its nonzero coefficients (no walk over the zeros). The figures are in
//! docs/benchmark.md.
//!
//! What it writes: JFIF, baseline, colour at 4:2:0 (what every camera and browser uses, and
//! what the sizes were before) or grey, the IJG quality scaling of the standard quantization
//! tables (Annex K.1) and the standard Huffman tables (Annex K.3). A plane at another
//! subsampling (4:4:4 from the long way's full decode, 4:2:2) is brought to 4:2:0 first by
//! averaging.
//!
//! The input is the relay's own decoded picture, but its size comes from a camera's frame:
//! nothing here panics on any size (indices are masked to the tables they read), and memory is
//! the output and, for a plane at another subsampling, one copy of it.

use crate::jpeg::K3_TABLES;
use crate::scaled_decode::{Plane, Planes, ZIGZAG};
use std::sync::OnceLock;

/// `picture` as a JPEG at `quality` (1-100), with a COM segment for each of `comments` right
/// after its start (cameras' timestamps, the NO SIGNAL mark, the benchmark's stamps).
pub fn encode<'c>(
    picture: &Planes,
    quality: u8,
    comments: impl IntoIterator<Item = &'c [u8]>,
) -> Vec<u8> {
    let width = picture.width.clamp(1, usize::from(u16::MAX));
    let height = picture.height.clamp(1, usize::from(u16::MAX));
    let colour = picture.planes.len() >= 3;
    let grey = Plane {
        w: 1,
        h: 1,
        step_x: 1,
        step_y: 1,
        px: vec![128],
    };
    let first = picture.planes.first().unwrap_or(&grey);
    let luma = Source::of(first, width, height, 1);
    let chroma: Vec<Source> = if colour {
        picture
            .planes
            .iter()
            .skip(1)
            .take(2)
            .map(|p| Source::of(p, width.div_ceil(2), height.div_ceil(2), 2))
            .collect()
    } else {
        Vec::new()
    };

    let quality = quality.clamp(1, 100);
    let luma_q = quant_table(&LUMA_Q, quality);
    let chroma_q = quant_table(&CHROMA_Q, quality);
    let mut out = Vec::with_capacity(width * height / 3 + 1024);
    out.extend_from_slice(&[0xFF, 0xD8]);
    out.extend_from_slice(&JFIF);
    for com in comments {
        crate::jpeg::push_com(&mut out, com);
    }
    headers(&mut out, width, height, colour, &luma_q, &chroma_q);

    // The code tables are the same for every picture: made once per process.
    static TABLES: OnceLock<[Codes; 4]> = OnceLock::new();
    let [luma_dc, luma_ac, chroma_dc, chroma_ac] =
        TABLES.get_or_init(|| [0, 1, 2, 3].map(Codes::new));
    let (luma_div, chroma_div) = (divisors(&luma_q), divisors(&chroma_q));
    let mut bits = BitWriter { out, acc: 0, n: 0 };
    let mut pred = [0i32; 3];
    let mcu = if colour { 16 } else { 8 };
    for my in 0..height.div_ceil(mcu) {
        for mx in 0..width.div_ceil(mcu) {
            for by in 0..mcu / 8 {
                for bx in 0..mcu / 8 {
                    let b = luma.block(mx * mcu + bx * 8, my * mcu + by * 8);
                    bits.block(&b, &luma_div, &mut pred[0], luma_dc, luma_ac);
                }
            }
            for (c, p) in chroma.iter().zip(pred.iter_mut().skip(1)) {
                let b = c.block(mx * 8, my * 8);
                bits.block(&b, &chroma_div, p, chroma_dc, chroma_ac);
            }
        }
    }
    let mut out = bits.finish();
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// Samples to read blocks from: a plane's own, or (at another subsampling) a copy brought to
/// the one the JPEG has.
struct Source<'a> {
    px: std::borrow::Cow<'a, [u8]>,
    stride: usize,
    /// The samples that are the picture's (a block past them repeats the last row or column).
    w: usize,
    h: usize,
}

impl<'a> Source<'a> {
    /// `plane` as `w` x `h` samples, each covering `step` x `step` of the picture's pixels.
    fn of(plane: &'a Plane, w: usize, h: usize, step: usize) -> Source<'a> {
        if plane.step_x == step && plane.step_y == step && plane.w > 0 && plane.h > 0 {
            return Source {
                px: std::borrow::Cow::Borrowed(&plane.px),
                stride: plane.w,
                w: w.min(plane.w),
                h: h.min(plane.h),
            };
        }
        // Another subsampling (a 4:2:2 camera's chroma, the long way's 4:4:4): each sample
        // the mean of the plane's over the step x step pixels it covers, edges repeated. A
        // plane's steps are 1 or 2 (sampling factors of 1 or 2), so a shift finds its sample.
        let (lx, ly) = (plane.step_x.trailing_zeros(), plane.step_y.trailing_zeros());
        let (last_x, last_y) = (plane.w.saturating_sub(1), plane.h.saturating_sub(1));
        let mut px = Vec::with_capacity(w * h);
        let n = (step * step) as u32;
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0u32;
                for dy in 0..step {
                    let row = ((y * step + dy) >> ly).min(last_y) * plane.w;
                    for dx in 0..step {
                        let col = ((x * step + dx) >> lx).min(last_x);
                        sum += u32::from(plane.px.get(row + col).copied().unwrap_or(128));
                    }
                }
                px.push(((sum + n / 2) / n) as u8);
            }
        }
        Source {
            px: std::borrow::Cow::Owned(px),
            stride: w,
            w,
            h,
        }
    }

    /// The 8x8 block at (`x0`, `y0`), level-shifted; past the edge the last row and column
    /// repeat (so the edge costs no bits).
    fn block(&self, x0: usize, y0: usize) -> [[f32; 8]; 8] {
        let mut b = [[0f32; 8]; 8];
        for (dy, row) in b.iter_mut().enumerate() {
            let y = (y0 + dy).min(self.h.saturating_sub(1));
            let line = self
                .px
                .get(y * self.stride..y * self.stride + self.w)
                .unwrap_or_default();
            if let Some(eight) = line.get(x0..x0 + 8) {
                for (v, &s) in row.iter_mut().zip(eight) {
                    *v = f32::from(s) - 128.0;
                }
            } else {
                let last = line.len().saturating_sub(1);
                for (dx, v) in row.iter_mut().enumerate() {
                    let s = line.get((x0 + dx).min(last)).copied().unwrap_or(128);
                    *v = f32::from(s) - 128.0;
                }
            }
        }
        b
    }
}

/// The JFIF APP0 segment: version 1.1, no density, no thumbnail.
const JFIF: [u8; 18] = [
    0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
];

/// The standard quantization tables (Annex K.1, K.2), in natural order.
const LUMA_Q: [u8; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const CHROMA_Q: [u8; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// `base` scaled for `quality` as libjpeg does (50 is the table itself), natural order.
fn quant_table(base: &[u8; 64], quality: u8) -> [u8; 64] {
    let q = u32::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    base.map(|b| ((u32::from(b) * scale + 50) / 100).clamp(1, 255) as u8)
}

/// What the AAN transform's output is multiplied by to be quantized: 1 / (q · the transform's
/// scale at that frequency · 8), in the transform's output order (see [`fdct`]).
fn divisors(q: &[u8; 64]) -> [f32; 64] {
    const AAN: [f32; 8] = [
        1.0,
        1.387_039_8,
        1.306_563,
        1.175_875_6,
        1.0,
        0.785_694_96,
        0.541_196_1,
        0.275_899_38,
    ];
    let mut d = [0f32; 64];
    for (i, v) in d.iter_mut().enumerate() {
        // Output (u, v) sits at u * 8 + v: horizontal frequency u, vertical v.
        let (u, vert) = (i / 8, i % 8);
        let q = f32::from(*q.get(vert * 8 + u).unwrap_or(&1));
        let s = AAN.get(u).unwrap_or(&1.0) * AAN.get(vert).unwrap_or(&1.0);
        *v = 1.0 / (q * s * 8.0);
    }
    d
}

/// The frame header, quantization and Huffman tables and the scan header.
fn headers(out: &mut Vec<u8>, w: usize, h: usize, colour: bool, lq: &[u8; 64], cq: &[u8; 64]) {
    let tables: &[&[u8; 64]] = if colour { &[lq, cq] } else { &[lq] };
    out.extend_from_slice(&[0xFF, 0xDB]);
    out.extend_from_slice(&((2 + 65 * tables.len()) as u16).to_be_bytes());
    for (id, t) in tables.iter().enumerate() {
        out.push(id as u8);
        out.extend(ZIGZAG.iter().map(|&n| *t.get(usize::from(n)).unwrap_or(&1)));
    }
    let components: &[[u8; 3]] = if colour {
        &[[1, 0x22, 0], [2, 0x11, 1], [3, 0x11, 1]]
    } else {
        &[[1, 0x11, 0]]
    };
    out.extend_from_slice(&[0xFF, 0xC0]);
    out.extend_from_slice(&((8 + 3 * components.len()) as u16).to_be_bytes());
    out.push(8);
    out.extend_from_slice(&(h as u16).to_be_bytes());
    out.extend_from_slice(&(w as u16).to_be_bytes());
    out.push(components.len() as u8);
    components.iter().for_each(|c| out.extend_from_slice(c));
    let huffman = K3_TABLES
        .get(..if colour { 4 } else { 2 })
        .unwrap_or_default();
    let len: usize = huffman.iter().map(|(_, _, v)| 17 + v.len()).sum();
    out.extend_from_slice(&[0xFF, 0xC4]);
    out.extend_from_slice(&((2 + len) as u16).to_be_bytes());
    for (class_id, counts, values) in huffman {
        out.push(*class_id);
        out.extend_from_slice(counts);
        out.extend_from_slice(values);
    }
    out.extend_from_slice(&[0xFF, 0xDA]);
    out.extend_from_slice(&((6 + 2 * components.len()) as u16).to_be_bytes());
    out.push(components.len() as u8);
    for (i, c) in components.iter().enumerate() {
        out.extend_from_slice(&[c[0], if i == 0 { 0x00 } else { 0x11 }]);
    }
    out.extend_from_slice(&[0, 63, 0]);
}

/// One standard Huffman table as codes to write: by symbol, `code << 8 | length` (0: none).
struct Codes([u32; 256]);

impl Codes {
    /// [`K3_TABLES`]' `which`-th table (luma DC, luma AC, chroma DC, chroma AC).
    fn new(which: usize) -> Codes {
        let mut codes = [0u32; 256];
        if let Some((_, counts, values)) = K3_TABLES.get(which) {
            let (mut code, mut k) = (0u32, 0usize);
            for (len, &n) in (1u32..).zip(counts.iter()) {
                for _ in 0..n {
                    if let Some(c) = values.get(k).and_then(|&s| codes.get_mut(usize::from(s))) {
                        *c = code << 8 | len;
                    }
                    code += 1;
                    k += 1;
                }
                code <<= 1;
            }
        }
        Codes(codes)
    }

    /// `symbol`'s code and its length.
    #[inline(always)]
    fn get(&self, symbol: u32) -> (u32, u32) {
        let e = *self.0.get(symbol as usize & 0xFF).unwrap_or(&0);
        (e >> 8, e & 0xFF)
    }
}

/// A coefficient's magnitude category and its value bits (JPEG F.1.2.1).
#[inline(always)]
fn magnitude(v: i32) -> (u32, u32) {
    let size = 32 - v.unsigned_abs().leading_zeros();
    let bits = (if v < 0 { v - 1 } else { v }) as u32 & ((1u32 << size) - 1);
    (size, bits)
}

/// The entropy-coded bytes: codes packed MSB first, a 0 after each 0xFF byte.
struct BitWriter {
    out: Vec<u8>,
    /// The low `n` bits are waiting (above them: bits already written).
    acc: u64,
    n: u32,
}

impl BitWriter {
    /// `len` (at most 27) bits of `bits`.
    #[inline(always)]
    fn put(&mut self, bits: u32, len: u32) {
        self.acc = self.acc << len | u64::from(bits);
        self.n += len;
        if self.n >= 32 {
            self.n -= 32;
            let word = (self.acc >> self.n) as u32;
            // Four bytes at once unless one of them is 0xFF.
            let inverted = !word;
            if inverted.wrapping_sub(0x0101_0101) & word & 0x8080_8080 == 0 {
                self.out.extend_from_slice(&word.to_be_bytes());
            } else {
                for b in word.to_be_bytes() {
                    self.out.push(b);
                    if b == 0xFF {
                        self.out.push(0);
                    }
                }
            }
        }
    }

    /// The last bits, padded with ones to a whole byte.
    fn finish(mut self) -> Vec<u8> {
        let pad = (8 - self.n % 8) % 8;
        self.acc = self.acc << pad | ((1u64 << pad) - 1);
        self.n += pad;
        while self.n >= 8 {
            self.n -= 8;
            let b = (self.acc >> self.n) as u8;
            self.out.push(b);
            if b == 0xFF {
                self.out.push(0);
            }
        }
        self.out
    }

    /// One block: transformed, quantized by `div`, coded with `dc` and `ac`; `pred` is its
    /// component's last DC.
    fn block(
        &mut self,
        b: &[[f32; 8]; 8],
        div: &[f32; 64],
        pred: &mut i32,
        dc: &Codes,
        ac: &Codes,
    ) {
        let (zz, mut nonzero) = quantize(&fdct(b), div);
        let [first, ..] = zz;
        let (size, value) = magnitude(first - *pred);
        *pred = first;
        let (code, len) = dc.get(size);
        self.put(code << size | value, len + size);
        let mut last = 0u32;
        while nonzero != 0 {
            let k = nonzero.trailing_zeros();
            nonzero &= nonzero - 1;
            let mut run = k - last - 1;
            while run > 15 {
                let (code, len) = ac.get(0xF0);
                self.put(code, len);
                run -= 16;
            }
            let (size, value) = magnitude(*zz.get(k as usize & 63).unwrap_or(&0));
            let (code, len) = ac.get(run << 4 | size);
            self.put(code << size | value, len + size);
            last = k;
        }
        if last != 63 {
            let (code, len) = ac.get(0x00);
            self.put(code, len);
        }
    }
}

/// The forward DCT of a block (rows of samples, level-shifted): the float AAN of libjpeg's
/// `jfdctflt.c`, unscaled (the scale is in [`divisors`]). Each pass works on the eight rows as
/// whole vectors (the same arithmetic in every lane), which the compiler vectorizes; between
/// the passes a transpose. Output: (u, v) at `u * 8 + v` (horizontal frequency first).
fn fdct(b: &[[f32; 8]; 8]) -> [f32; 64] {
    let vertical = pass(b);
    let mut t = [[0f32; 8]; 8];
    for (y, row) in vertical.iter().enumerate() {
        for (x, &v) in row.iter().enumerate() {
            if let Some(c) = t.get_mut(x).and_then(|r| r.get_mut(y)) {
                *c = v;
            }
        }
    }
    let both = pass(&t);
    let mut out = [0f32; 64];
    for (o, r) in out.chunks_exact_mut(8).zip(both.iter()) {
        o.copy_from_slice(r);
    }
    out
}

/// One dimension of the AAN transform, along the rows' index, in all eight lanes.
#[inline(always)]
fn pass(d: &[[f32; 8]; 8]) -> [[f32; 8]; 8] {
    let [d0, d1, d2, d3, d4, d5, d6, d7] = d;
    let mut o = [[0f32; 8]; 8];
    for i in 0..8 {
        let at = |r: &[f32; 8]| r.get(i).copied().unwrap_or(0.0);
        let (t0, t7) = (at(d0) + at(d7), at(d0) - at(d7));
        let (t1, t6) = (at(d1) + at(d6), at(d1) - at(d6));
        let (t2, t5) = (at(d2) + at(d5), at(d2) - at(d5));
        let (t3, t4) = (at(d3) + at(d4), at(d3) - at(d4));
        // Even part.
        let (t10, t13) = (t0 + t3, t0 - t3);
        let (t11, t12) = (t1 + t2, t1 - t2);
        let z1 = (t12 + t13) * 0.707_106_77;
        let even = [t10 + t11, t13 + z1, t10 - t11, t13 - z1];
        // Odd part.
        let (t10, t11, t12) = (t4 + t5, t5 + t6, t6 + t7);
        let z5 = (t10 - t12) * 0.382_683_43;
        let z2 = 0.541_196_1 * t10 + z5;
        let z4 = 1.306_563 * t12 + z5;
        let z3 = t11 * 0.707_106_77;
        let (z11, z13) = (t7 + z3, t7 - z3);
        let odd = [z11 + z4, z13 - z2, z13 + z2, z11 - z4];
        for (j, v) in [
            even[0], odd[0], even[1], odd[1], even[2], odd[2], even[3], odd[3],
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(c) = o.get_mut(j).and_then(|r| r.get_mut(i)) {
                *c = v;
            }
        }
    }
    o
}

/// The transform's output quantized, in zigzag order, and the mask of the AC coefficients
/// that are not zero (bit `k` for zigzag position `k`). Values are held to the 11 bits a
/// baseline coefficient has.
#[inline(always)]
fn quantize(c: &[f32; 64], div: &[f32; 64]) -> ([i32; 64], u64) {
    let mut q = [0i32; 64];
    for ((o, &v), &d) in q.iter_mut().zip(c).zip(div) {
        // Rounds to nearest (even) by adding 1.5 * 2^23, after which the integer is the low
        // bits of the sum's mantissa: the same arithmetic in every lane, so it vectorizes
        // (`as i32` would check each lane for NaN and saturation). Exact for |v·d| < 2^22.
        // Clamped first, to the 11 bits a baseline coefficient has (minps/maxps).
        let t = (v * d).clamp(-1023.0, 1023.0) + 12_582_912.0;
        *o = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    }
    let mut zz = [0i32; 64];
    for (z, &n) in zz.iter_mut().zip(OUTPUT_ORDER.iter()) {
        *z = *q.get(usize::from(n) & 63).unwrap_or(&0);
    }
    let mut nonzero = 0u64;
    for (j, eight) in zz.chunks_exact(8).enumerate() {
        let mut m = 0u64;
        for (i, &z) in eight.iter().enumerate() {
            m |= u64::from(z != 0) << i;
        }
        nonzero |= m << (8 * j);
    }
    (zz, nonzero & !1)
}

/// For each zigzag position, where [`fdct`] put that coefficient.
// Evaluated at compile time: an index out of bounds would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const OUTPUT_ORDER: [u8; 64] = {
    let mut o = [0u8; 64];
    let mut k = 0;
    while k < 64 {
        let n = ZIGZAG[k];
        o[k] = (n % 8) * 8 + n / 8;
        k += 1;
    }
    o
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture of smooth gradients and a sharp edge, in three planes at 4:2:0.
    fn picture(w: usize, h: usize) -> Planes {
        let plane = |pw: usize, ph: usize, step: usize, f: &dyn Fn(usize, usize) -> u8| Plane {
            w: pw,
            h: ph,
            step_x: step,
            step_y: step,
            px: (0..ph)
                .flat_map(|y| (0..pw).map(move |x| (x, y)))
                .map(|(x, y)| f(x * step, y * step))
                .collect(),
        };
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        Planes {
            width: w,
            height: h,
            planes: vec![
                plane(w, h, 1, &|x, y| {
                    if x > w / 2 {
                        (x * 255 / w) as u8
                    } else {
                        (y * 200 / h + 20) as u8
                    }
                }),
                plane(cw, ch, 2, &|x, _| (96 + x * 64 / w) as u8),
                plane(cw, ch, 2, &|_, y| (160 - y * 64 / h) as u8),
            ],
        }
    }

    /// Peak signal-to-noise of each plane of `got` against `want`'s pixels.
    fn psnr(want: &Planes, got: &[u8], channels: usize) -> Vec<f64> {
        (0..channels)
            .map(|c| {
                let p = &want.planes[c];
                let mut se = 0f64;
                for y in 0..want.height {
                    for x in 0..want.width {
                        let a = f64::from(p.at(x, y));
                        let b = f64::from(got[(y * want.width + x) * channels + c]);
                        se += (a - b) * (a - b);
                    }
                }
                let mse = se / (want.width * want.height) as f64;
                10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
            })
            .collect()
    }

    fn decode(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
        use zune_jpeg::zune_core::{colorspace::ColorSpace, options::DecoderOptions};
        let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(std::io::Cursor::new(jpeg), opts);
        let px = d.decode().expect("a JPEG another decoder reads");
        let (w, h) = d.dimensions().unwrap();
        (w, h, px)
    }

    #[test]
    fn another_decoder_reads_back_the_picture_at_every_quality_and_size() {
        // Sizes that are and are not whole blocks and MCUs, down to one pixel.
        for (w, h) in [(64, 48), (67, 45), (17, 9), (8, 8), (1, 1), (321, 239)] {
            let pic = picture(w, h);
            for (quality, floor) in [(50, 30.0), (80, 34.0), (95, 38.0)] {
                let jpeg = encode(&pic, quality, []);
                let (dw, dh, px) = decode(&jpeg);
                assert_eq!((dw, dh), (w, h));
                let p = psnr(&pic, &px, 3);
                // Chroma against the decoder's upsampling of it, which smooths: a lower floor.
                let ok = p[0] > floor && p[1..].iter().all(|&v| v > 33.0);
                assert!(ok, "{w}x{h} q{quality}: {p:?}");
            }
        }
    }

    #[test]
    fn grey_and_other_subsamplings_encode() {
        let pic = picture(40, 30);
        let grey = Planes {
            planes: pic.planes[..1].to_vec(),
            ..pic.clone()
        };
        let (w, h, px) = {
            let jpeg = encode(&grey, 80, []);
            use zune_jpeg::zune_core::{colorspace::ColorSpace, options::DecoderOptions};
            let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::Luma);
            let mut d = zune_jpeg::JpegDecoder::new_with_options(std::io::Cursor::new(&jpeg), opts);
            let px = d.decode().unwrap();
            let (w, h) = d.dimensions().unwrap();
            (w, h, px)
        };
        assert_eq!((w, h), (40, 30));
        assert!(psnr(&grey, &px, 1)[0] > 34.0);
        // 4:4:4 (the long way's full decode): chroma averaged to 4:2:0 first.
        let full: Vec<u8> = (0..30)
            .flat_map(|y| (0..40).flat_map(move |x| [(x * 6) as u8, 100 + y as u8, 150]))
            .collect();
        let pic = Planes::from_interleaved(&full, 40, 30, 3);
        let (_, _, px) = decode(&encode(&pic, 95, []));
        assert!(psnr(&pic, &px, 3).iter().all(|&v| v > 35.0));
        // 4:2:2 (most USB webcams): chroma half as wide, full height, averaged down a row pair.
        let mut pic = picture(40, 30);
        for (c, p) in pic.planes.iter_mut().enumerate().skip(1) {
            (p.h, p.step_y) = (30, 1);
            p.px = (0..30 * p.w)
                .map(|i| (90 + c * 30 + i % 20) as u8)
                .collect();
        }
        let (_, _, px) = decode(&encode(&pic, 95, []));
        assert!(
            psnr(&pic, &px, 3).iter().all(|&v| v > 35.0),
            "{:?}",
            psnr(&pic, &px, 3)
        );
    }

    #[test]
    fn comments_follow_the_start_and_stuffing_keeps_markers_out_of_the_scan() {
        // Noise: many 0xFF bytes in the coded data.
        let mut pic = picture(64, 64);
        let mut seed = 7u32;
        for v in pic.planes[0].px.iter_mut() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *v = (seed >> 24) as u8;
        }
        let jpeg = encode(&pic, 95, [&b"stamp 1"[..], b"two"]);
        let comments: Vec<&[u8]> = crate::jpeg::comments(&jpeg).collect();
        assert_eq!(comments, [&b"stamp 1"[..], b"two"]);
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let scan = &jpeg[sos + 14..jpeg.len() - 2];
        assert!(scan.windows(2).all(|w| w[0] != 0xFF || w[1] == 0));
        assert_eq!(&jpeg[jpeg.len() - 2..], [0xFF, 0xD9]);
        let (_, _, px) = decode(&jpeg);
        assert!(psnr(&pic, &px, 3)[0] > 38.0);
    }

    #[test]
    fn the_transform_matches_the_textbook_dct() {
        // Control for the AAN's scale and order: a direct DCT-II of a block, quantized with
        // all-ones tables, must give the same coefficients.
        let mut b = [[0f32; 8]; 8];
        for (y, row) in b.iter_mut().enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                *v = ((x * 37 + y * 11 + x * y * 5) % 255) as f32 - 128.0;
            }
        }
        let (zz, _) = quantize(&fdct(&b), &divisors(&[1; 64]));
        let c = |u: usize| {
            if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            }
        };
        for (k, &n) in ZIGZAG.iter().enumerate() {
            let (v, u) = (usize::from(n) / 8, usize::from(n) % 8);
            let mut s = 0f64;
            for (y, row) in b.iter().enumerate() {
                for (x, &p) in row.iter().enumerate() {
                    s += f64::from(p)
                        * ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos()
                        * ((2 * y + 1) as f64 * v as f64 * std::f64::consts::PI / 16.0).cos();
                }
            }
            let want = (c(u) * c(v) * s / 4.0).round() as i32;
            assert!((zz[k] - want).abs() <= 1, "k {k}: {} vs {want}", zz[k]);
        }
    }
}
