#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! A baseline JPEG decoded straight to 1/2, 1/4 or 1/8 of its size: bytes in, planes out, no
//! I/O, like the parser.
//!
//! Why our own decoder: a smaller size used to decode the whole picture (`zune-jpeg`), then
//! average it down, which did all of a full decode's work (every coefficient through an 8x8
//! inverse transform, chroma upsampled to full size) to throw three quarters or more of it
//! away, and cost more per frame than ffmpeg. A JPEG block's low-frequency coefficients are
//! already a smaller picture of it (DCT scaling, what libjpeg's `scale_denom` does): 1/8 is the
//! DC coefficient alone (the block's mean, no transform at all), 1/4 a 2x2 and 1/2 a 4x4 inverse
//! transform of the top-left coefficients; chroma stays at its own (subsampled) resolution. The
//! entropy decoding cannot be skipped (every coefficient must be read to find the next block),
//! so that is where this module spends its care: a 9-bit lookup that decodes most codes and
//! their value bits in one step (as `stb_image` does), and a bit reader that takes eight bytes
//! at a time when none of them is a marker.
//!
//! What it decodes: baseline and extended sequential Huffman pictures (SOF0, SOF1) of 8-bit
//! samples, one or three components, one interleaved scan, sampling factors of 1 or 2,
//! restart intervals; tables from the picture or, missing (a USB webcam's frame), the
//! standard ones (JPEG Annex K.3). That is what cameras send. Anything else (progressive,
//! arithmetic, 12-bit, CMYK) is [`Refused::Unsupported`] and the caller decodes it the long
//! way.
//!
//! Hostile bytes: never a panic (plain indexing is denied here; arithmetic that a frame's
//! numbers reach wraps, or is done in `f32`), memory bounded by the caller's pixel limit
//! (checked on the header's size before anything is allocated), and time linear in the
//! picture's blocks: a scan that ends early (a truncated frame) stops at the first block past
//! its end and the rest of the picture is left grey, as libjpeg does.

use crate::jpeg::K3_TABLES;

/// Why a picture was not decoded here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// A kind of JPEG this decoder does not do (progressive, arithmetic, 12-bit, ...): decode
    /// it the long way.
    Unsupported(&'static str),
    /// Not a picture: broken headers or tables.
    Bad(&'static str),
    /// Larger than the limit: `width`x`height`.
    TooLarge(u16, u16),
}

/// One component of a decoded picture.
#[derive(Debug, Clone)]
pub struct Plane {
    /// Pixels per row, and rows (whole blocks: may be a little more than the picture needs).
    pub w: usize,
    pub h: usize,
    /// How many of the picture's pixels one of this plane's covers, across and down (1 or 2:
    /// chroma is often half the size of luma).
    pub step_x: usize,
    pub step_y: usize,
    pub px: Vec<u8>,
}

impl Plane {
    /// The sample for the picture's pixel (`x`, `y`); mid grey outside.
    pub fn at(&self, x: usize, y: usize) -> u8 {
        let (x, y) = (x / self.step_x, y / self.step_y);
        if x >= self.w {
            return 128;
        }
        self.px.get(y * self.w + x).copied().unwrap_or(128)
    }

    /// Half the width and height: each sample the rounded mean of a 2x2 square.
    fn halve(&self) -> Plane {
        let (w, h) = ((self.w / 2).max(1), (self.h / 2).max(1));
        let mut px = vec![0u8; w * h];
        let at = |x: usize, y: usize| {
            u16::from(
                self.px
                    .get(y.min(self.h.saturating_sub(1)) * self.w + x.min(self.w.saturating_sub(1)))
                    .copied()
                    .unwrap_or(128),
            )
        };
        for (y, row) in px.chunks_exact_mut(w).enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                let s = at(2 * x, 2 * y)
                    + at(2 * x + 1, 2 * y)
                    + at(2 * x, 2 * y + 1)
                    + at(2 * x + 1, 2 * y + 1);
                *v = ((s + 2) >> 2) as u8;
            }
        }
        Plane { w, h, px, ..*self }
    }
}

/// A decoded picture: `width` x `height` pixels, one plane (grey) or three (Y, Cb, Cr).
#[derive(Debug, Clone)]
pub struct Planes {
    pub width: usize,
    pub height: usize,
    pub planes: Vec<Plane>,
}

impl Planes {
    /// Half the width and height.
    pub fn halve(&self) -> Planes {
        Planes {
            width: (self.width / 2).max(1),
            height: (self.height / 2).max(1),
            planes: self.planes.iter().map(Plane::halve).collect(),
        }
    }

    /// A picture from interleaved pixels with `channels` (1 or 3) samples each, all planes at
    /// full resolution.
    pub fn from_interleaved(px: &[u8], width: usize, height: usize, channels: usize) -> Planes {
        let planes = (0..channels)
            .map(|c| Plane {
                w: width,
                h: height,
                step_x: 1,
                step_y: 1,
                px: px.iter().skip(c).step_by(channels).copied().collect(),
            })
            .collect();
        Planes {
            width,
            height,
            planes,
        }
    }
}

/// Natural (row-major) index of the `k`-th coefficient in zigzag order.
pub(crate) const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Bits the fast Huffman lookup reads at once.
const FAST_BITS: u32 = 9;

/// One Huffman table, ready for decoding.
#[derive(Clone)]
struct Huffman {
    /// By the next [`FAST_BITS`] bits: `length << 8 | symbol` of a code that short, or 0.
    fast: Vec<u16>,
    /// For an AC table, by the next [`FAST_BITS`] bits: a code and its value bits together when
    /// both fit, as `value << 16 | run << 8 | bits used` (0: take the slow way).
    fast_ac: Vec<i32>,
    /// The largest code of each length (1-16), -1 when none; the first code of each length and
    /// where its symbols start.
    max_code: [i32; 17],
    first_code: [i32; 17],
    first_symbol: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    /// The table of `counts` codes per length and their `symbols` (a DHT's contents).
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Huffman, Refused> {
        let bad = Refused::Bad("a Huffman table is not a prefix code");
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total > 256 || symbols.len() < total {
            return Err(bad);
        }
        let mut t = Huffman {
            fast: vec![0; 1 << FAST_BITS],
            fast_ac: vec![0; 1 << FAST_BITS],
            max_code: [-1; 17],
            first_code: [0; 17],
            first_symbol: [0; 17],
            symbols: symbols.get(..total).unwrap_or_default().to_vec(),
        };
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16u32 {
            let n = i32::from(*counts.get(len as usize - 1).unwrap_or(&0));
            if let (Some(f), Some(s)) = (
                t.first_code.get_mut(len as usize),
                t.first_symbol.get_mut(len as usize),
            ) {
                *f = code;
                *s = k as i32;
            }
            for _ in 0..n {
                if code >= 1 << len {
                    return Err(bad);
                }
                let symbol = *t.symbols.get(k).unwrap_or(&0);
                if len <= FAST_BITS {
                    let shift = FAST_BITS - len;
                    let from = (code as usize) << shift;
                    for i in from..from + (1 << shift) {
                        if let Some(e) = t.fast.get_mut(i) {
                            *e = (len as u16) << 8 | u16::from(symbol);
                        }
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                if let Some(m) = t.max_code.get_mut(len as usize) {
                    *m = code - 1;
                }
            }
            code <<= 1;
        }
        t.fill_fast_ac();
        Ok(t)
    }

    /// The AC shortcut: codes whose value bits fit in the same lookup.
    fn fill_fast_ac(&mut self) {
        for (i, ac) in self.fast_ac.iter_mut().enumerate() {
            let e = *self.fast.get(i).unwrap_or(&0);
            if e == 0 {
                continue;
            }
            let (len, rs) = (u32::from(e >> 8), (e & 0xFF) as u8);
            let (run, size) = (u32::from(rs >> 4), u32::from(rs & 15));
            if size == 0 || len + size > FAST_BITS {
                continue;
            }
            let bits = ((i as u32) >> (FAST_BITS - len - size)) & ((1 << size) - 1);
            let value = extend(bits, size);
            if (-128..128).contains(&value) {
                *ac = value << 16 | (run << 8 | (len + size)) as i32;
            }
        }
    }
}

/// The signed value of `size` value bits (JPEG F.2.2.1's EXTEND).
fn extend(bits: u32, size: u32) -> i32 {
    if size == 0 {
        return 0;
    }
    let v = bits as i32;
    if v < 1 << (size - 1) {
        v - (1 << size) + 1
    } else {
        v
    }
}

/// The entropy-coded bytes, read MSB first: byte stuffing undone, and zeros past a marker or
/// the end (counted, so a truncated scan is known).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    /// Zero bytes supplied because the data had ended (or a marker came).
    phantom: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits {
            data,
            pos: 0,
            acc: 0,
            n: 0,
            phantom: 0,
        }
    }

    /// At least 57 bits in the accumulator.
    #[inline]
    fn refill(&mut self) {
        // Eight bytes at once when none of them is 0xFF (no stuffing, no marker).
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let word = u64::from_be_bytes(chunk.try_into().unwrap_or([0xFF; 8]));
            let inverted = !word;
            let has_ff =
                (inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080)
                    != 0;
            if !has_ff {
                let k = (64 - self.n) / 8;
                if k > 0 {
                    let take = word >> (64 - 8 * k);
                    self.acc |= take << (64 - self.n - 8 * k);
                    self.n += 8 * k;
                    self.pos += k as usize;
                }
                return;
            }
        }
        while self.n <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(0xFF) if self.data.get(self.pos + 1) == Some(&0) => {
                    self.pos += 2;
                    0xFF
                }
                Some(0xFF) | None => {
                    self.phantom = self.phantom.saturating_add(1);
                    0
                }
                Some(&b) => {
                    self.pos += 1;
                    b
                }
            };
            self.acc |= u64::from(byte) << (56 - self.n);
            self.n += 8;
        }
    }

    #[inline]
    fn consume(&mut self, k: u32) {
        // k <= 25 (a code and its value bits) <= n: refilled to 57 before each use.
        self.acc = self.acc.wrapping_shl(k);
        self.n = self.n.saturating_sub(k);
    }

    /// `size` (0-16) bits as a number.
    #[inline]
    fn take(&mut self, size: u32) -> u32 {
        if size == 0 {
            return 0;
        }
        if self.n < size {
            self.refill();
        }
        let v = (self.acc >> (64 - size)) as u32;
        self.consume(size);
        v
    }

    /// One symbol of `t`; `None` for a code the table does not have.
    #[inline]
    fn symbol(&mut self, t: &Huffman) -> Option<u8> {
        if self.n < 16 {
            self.refill();
        }
        let e = *t.fast.get((self.acc >> (64 - FAST_BITS)) as usize)?;
        if e != 0 {
            self.consume(u32::from(e >> 8));
            return Some(e as u8);
        }
        for len in FAST_BITS + 1..=16 {
            let code = (self.acc >> (64 - len)) as i32;
            if code <= *t.max_code.get(len as usize)? {
                self.consume(len);
                let i =
                    t.first_symbol.get(len as usize)? + code - t.first_code.get(len as usize)?;
                return t.symbols.get(usize::try_from(i).ok()?).copied();
            }
        }
        None
    }

    /// After a restart interval: the bits left are padding; the RSTn marker is skipped.
    fn restart(&mut self) {
        self.acc = 0;
        self.n = 0;
        let rest = self.data.get(self.pos..).unwrap_or_default();
        // The marker should be next; a broken stream resumes at the next one there is.
        match rest
            .windows(2)
            .position(|w| matches!(w, [0xFF, 0xD0..=0xD7]))
        {
            Some(at) => {
                self.pos += at + 2;
                self.phantom = 0;
            }
            // None left: the data has ended, and stays ended (the scan stops at the next
            // block instead of decoding zeros to the picture's last row).
            None => self.pos += rest.len(),
        }
    }
}

/// One component of the frame: its sampling factors, tables and where its blocks go.
struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant: usize,
    dc: usize,
    ac: usize,
    pred: i32,
}

/// What the headers said.
struct Header {
    width: usize,
    height: usize,
    components: Vec<Component>,
    quant: [[u16; 64]; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    restart: usize,
    /// Where the scan's entropy-coded data starts.
    scan: usize,
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

/// The headers up to the first scan.
fn headers(jpeg: &[u8], max_pixels: usize) -> Result<Header, Refused> {
    let bad = Refused::Bad;
    if jpeg.get(..2) != Some(&[0xFF, 0xD8][..]) {
        return Err(bad("no JPEG start"));
    }
    let standard = |class: u8, id: u8| {
        K3_TABLES
            .iter()
            .find(|(tc, _, _)| *tc == class << 4 | id)
            .and_then(|(_, counts, symbols)| Huffman::new(counts, symbols).ok())
    };
    let mut hd = Header {
        width: 0,
        height: 0,
        components: Vec::new(),
        quant: [[0; 64]; 4],
        dc: [standard(0, 0), standard(0, 1), None, None],
        ac: [standard(1, 0), standard(1, 1), None, None],
        restart: 0,
        scan: 0,
    };
    let mut i = 2usize;
    loop {
        while jpeg.get(i) == Some(&0xFF) && jpeg.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if jpeg.get(i) != Some(&0xFF) {
            return Err(bad("a header segment is broken"));
        }
        let marker = *jpeg.get(i + 1).ok_or(bad("no scan"))?;
        let len = be16(jpeg, i + 2).ok_or(bad("no scan"))?;
        let body = jpeg
            .get(i + 4..i + 2 + len)
            .ok_or(bad("a header segment is cut short"))?;
        if len < 2 {
            return Err(bad("a header segment is broken"));
        }
        match marker {
            // A second frame header: which one holds is anyone's guess (the size checks
            // read the first), so the long way decides.
            0xC0 | 0xC1 if !hd.components.is_empty() => {
                return Err(bad("more than one frame header"))
            }
            0xC0 | 0xC1 => frame_header(&mut hd, body, max_pixels)?,
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(Refused::Unsupported("not a baseline or sequential picture"))
            }
            0xC4 => huffman_tables(&mut hd, body)?,
            0xDB => quant_tables(&mut hd, body)?,
            0xDD => hd.restart = be16(body, 0).ok_or(bad("a broken DRI"))?,
            0xDA => {
                scan_header(&mut hd, body)?;
                hd.scan = i + 2 + len;
                return Ok(hd);
            }
            0xD9 => return Err(bad("no scan")),
            _ => {}
        }
        i += 2 + len;
    }
}

fn frame_header(hd: &mut Header, b: &[u8], max_pixels: usize) -> Result<(), Refused> {
    let bad = Refused::Bad("a broken frame header");
    if b.first() != Some(&8) {
        return Err(Refused::Unsupported("not 8-bit samples"));
    }
    let (height, width) = (
        be16(b, 1).ok_or(bad.clone())?,
        be16(b, 3).ok_or(bad.clone())?,
    );
    let n = usize::from(*b.get(5).ok_or(bad.clone())?);
    if width == 0 || height == 0 {
        return Err(Refused::Unsupported("the height comes later (DNL)"));
    }
    if width * height > max_pixels {
        return Err(Refused::TooLarge(width as u16, height as u16));
    }
    if n != 1 && n != 3 {
        return Err(Refused::Unsupported("neither grey nor YCbCr"));
    }
    let mut components = Vec::new();
    for c in 0..n {
        let f = b.get(6 + 3 * c..9 + 3 * c).ok_or(bad.clone())?;
        let (h, v, q) = match f {
            [_, hv, q] => (usize::from(hv >> 4), usize::from(hv & 15), usize::from(*q)),
            _ => return Err(bad),
        };
        if !(1..=2).contains(&h) || !(1..=2).contains(&v) || q > 3 {
            return Err(Refused::Unsupported("sampling factors other than 1 and 2"));
        }
        let id = *f.first().unwrap_or(&0);
        components.push(Component {
            id,
            h: if n == 1 { 1 } else { h },
            v: if n == 1 { 1 } else { v },
            quant: q,
            dc: 0,
            ac: 0,
            pred: 0,
        });
    }
    (hd.width, hd.height, hd.components) = (width, height, components);
    Ok(())
}

fn huffman_tables(hd: &mut Header, mut b: &[u8]) -> Result<(), Refused> {
    let bad = Refused::Bad("a broken Huffman table");
    while let Some(&tc) = b.first() {
        let counts: [u8; 16] = b
            .get(1..17)
            .and_then(|c| c.try_into().ok())
            .ok_or(bad.clone())?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = b.get(17..17 + total).ok_or(bad.clone())?;
        let table = Huffman::new(&counts, symbols)?;
        let slot = match tc >> 4 {
            0 => hd.dc.get_mut(usize::from(tc & 15)),
            1 => hd.ac.get_mut(usize::from(tc & 15)),
            _ => None,
        };
        *slot.ok_or(bad.clone())? = Some(table);
        b = b.get(17 + total..).unwrap_or_default();
    }
    Ok(())
}

fn quant_tables(hd: &mut Header, mut b: &[u8]) -> Result<(), Refused> {
    let bad = Refused::Bad("a broken quantization table");
    while let Some(&pq) = b.first() {
        let wide = pq >> 4 != 0;
        let size = if wide { 128 } else { 64 };
        let values = b.get(1..1 + size).ok_or(bad.clone())?;
        let table = hd.quant.get_mut(usize::from(pq & 15)).ok_or(bad.clone())?;
        for (k, q) in table.iter_mut().enumerate() {
            *q = if wide {
                be16(values, 2 * k).unwrap_or(1) as u16
            } else {
                u16::from(*values.get(k).unwrap_or(&1))
            };
        }
        b = b.get(1 + size..).unwrap_or_default();
    }
    Ok(())
}

fn scan_header(hd: &mut Header, b: &[u8]) -> Result<(), Refused> {
    let bad = Refused::Bad("a broken scan header");
    let n = usize::from(*b.first().ok_or(bad.clone())?);
    if hd.components.is_empty() {
        return Err(bad);
    }
    if n != hd.components.len() {
        return Err(Refused::Unsupported("components in scans of their own"));
    }
    for s in 0..n {
        let (id, tables) = match b.get(1 + 2 * s..3 + 2 * s) {
            Some(&[id, t]) => (id, t),
            _ => return Err(bad),
        };
        let c = hd
            .components
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or(bad.clone())?;
        (c.dc, c.ac) = (usize::from(tables >> 4), usize::from(tables & 15));
        if c.dc > 3 || c.ac > 3 {
            return Err(bad);
        }
    }
    match b.get(1 + 2 * n..4 + 2 * n) {
        Some(&[0, 63, 0]) => Ok(()),
        _ => Err(Refused::Unsupported("not a sequential scan")),
    }
}

/// `jpeg` at 1/2^`level` of its size (`level` 1 to 3). Pictures of more than `max_pixels`
/// are refused before anything is allocated.
pub fn decode(jpeg: &[u8], level: u8, max_pixels: usize) -> Result<Planes, Refused> {
    let level = level.clamp(1, 3);
    let mut hd = headers(jpeg, max_pixels)?;
    let k = 8usize >> level; // output pixels per block side
    let hmax = hd.components.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = hd.components.iter().map(|c| c.v).max().unwrap_or(1);
    let (mcu_x, mcu_y) = (hd.width.div_ceil(8 * hmax), hd.height.div_ceil(8 * vmax));
    let mut planes: Vec<Plane> = hd
        .components
        .iter()
        .map(|c| {
            let (w, h) = (mcu_x * c.h * k, mcu_y * c.v * k);
            Plane {
                w,
                h,
                step_x: hmax / c.h,
                step_y: vmax / c.v,
                px: vec![128; w * h],
            }
        })
        .collect();
    for c in &hd.components {
        if hd.dc.get(c.dc).is_none_or(Option::is_none)
            || hd.ac.get(c.ac).is_none_or(Option::is_none)
        {
            return Err(Refused::Bad(
                "a scan uses a Huffman table that is not there",
            ));
        }
    }
    let mut bits = Bits::new(jpeg.get(hd.scan..).unwrap_or_default());
    // Monomorphised by the corner kept, so the per-block work has fixed sizes.
    match k {
        1 => scan::<1>(&mut hd, &mut planes, &mut bits, mcu_x, mcu_y),
        2 => scan::<2>(&mut hd, &mut planes, &mut bits, mcu_x, mcu_y),
        _ => scan::<4>(&mut hd, &mut planes, &mut bits, mcu_x, mcu_y),
    }
    Ok(Planes {
        width: (hd.width >> level).max(1),
        height: (hd.height >> level).max(1),
        planes,
    })
}

/// The scan's blocks, each as its top-left `K` x `K` corner transformed, into `planes`. Stops
/// at the end of the data or at a code no table has (the rest stays grey).
fn scan<const K: usize>(
    hd: &mut Header,
    planes: &mut [Plane],
    bits: &mut Bits,
    mcu_x: usize,
    mcu_y: usize,
) {
    // Where each zigzag position lands in the kept corner (255: not kept).
    let mut keep = [255u8; 64];
    for (zz, slot) in keep.iter_mut().enumerate() {
        let n = usize::from(*ZIGZAG.get(zz).unwrap_or(&63));
        if n / 8 < K && n % 8 < K {
            *slot = ((n / 8) * K + n % 8) as u8;
        }
    }
    let mut coef = [0f32; 16];
    let mut todo = hd.restart;
    for my in 0..mcu_y {
        for mx in 0..mcu_x {
            if hd.restart > 0 {
                if todo == 0 {
                    bits.restart();
                    hd.components.iter_mut().for_each(|c| c.pred = 0);
                    todo = hd.restart;
                }
                todo -= 1;
            }
            for (c, plane) in hd.components.iter_mut().zip(planes.iter_mut()) {
                let (Some(Some(dc)), Some(Some(ac)), Some(q)) =
                    (hd.dc.get(c.dc), hd.ac.get(c.ac), hd.quant.get(c.quant))
                else {
                    return;
                };
                for by in 0..c.v {
                    for bx in 0..c.h {
                        if bits.phantom > 8 {
                            return; // the scan ended: the rest stays grey
                        }
                        let out: [[u8; K]; K] =
                            match block::<K>(bits, dc, ac, &mut c.pred, q, &keep, &mut coef) {
                                None => return, // a code no table has: the rest stays grey
                                Some(rows) if rows > 1 || ac_only_in_first_row(&coef) => {
                                    idct::<K>(&coef, rows)
                                }
                                // A flat block (no AC in the corner): its mean, no transform.
                                Some(_) => [[mean(&coef); K]; K],
                            };
                        let (x0, y0) = ((mx * c.h + bx) * K, (my * c.v + by) * K);
                        for (row, line) in out.iter().enumerate() {
                            let at = (y0 + row) * plane.w + x0;
                            if let Some(dst) = plane.px.get_mut(at..at + K) {
                                dst.copy_from_slice(line);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether the first row of a corner holds anything but the DC coefficient.
fn ac_only_in_first_row(coef: &[f32; 16]) -> bool {
    coef.iter().skip(1).take(3).any(|&c| c != 0.0)
}

/// One block's coefficients: the kept `K` x `K` corner (`keep`), dequantized, into `coef`;
/// which of the corner's rows hold a coefficient (bit `v` for row `v`; 1: the first row
/// alone, which may still be a flat block).
#[inline(always)]
fn block<const K: usize>(
    bits: &mut Bits,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    q: &[u16; 64],
    keep: &[u8; 64],
    coef: &mut [f32; 16],
) -> Option<u8> {
    for c in coef.iter_mut().take(K * K) {
        *c = 0.0;
    }
    let size = u32::from(bits.symbol(dc)? & 15);
    let diff = extend(bits.take(size), size);
    *pred = pred.wrapping_add(diff);
    if let Some(c) = coef.first_mut() {
        *c = *pred as f32 * f32::from(*q.first().unwrap_or(&1));
    }
    let mut k = 1usize;
    let mut rows = 1u8;
    while k < 64 {
        if bits.n < 16 {
            bits.refill();
        }
        let fast = *ac.fast_ac.get((bits.acc >> (64 - FAST_BITS)) as usize)?;
        let (run, value) = if fast != 0 {
            bits.consume((fast & 0xFF) as u32);
            (((fast >> 8) & 0xFF) as usize, fast >> 16)
        } else {
            let rs = bits.symbol(ac)?;
            let (run, size) = (usize::from(rs >> 4), u32::from(rs & 15));
            if size == 0 {
                if run == 15 {
                    k += 16;
                    continue;
                }
                break; // end of block
            }
            (run, extend(bits.take(size), size))
        };
        k += run;
        if K > 1 {
            if let Some(&slot) = keep.get(k) {
                if let (Some(c), Some(&qk)) = (coef.get_mut(usize::from(slot)), q.get(k)) {
                    *c = value as f32 * f32::from(qk);
                    rows |= 1 << (usize::from(slot) / K);
                }
            }
        }
        k += 1;
    }
    Some(rows)
}

/// The `K` x `K` inverse transform of a block's top-left `K` x `K` coefficients (`K` 1, 2 or
/// 4), level-shifted and clamped: the block at 1/(8/`K`) of its size. Derivation: the 8-point
/// IDCT sampled at the centres of `K` equal parts of the block is the `K`-point IDCT of the
/// first `K` coefficients with the 8-point transform's scale, 1/2 per dimension.
// Fixed-size arrays indexed by loop counters below 4 and 16: every index is in bounds and
// the compiler sees it (no bounds check, no panic path is left).
#[allow(clippy::indexing_slicing)]
#[inline(always)]
/// `rows` (bit `v` set: row `v` of the coefficients holds something) lets the 4x4 transform
/// skip the rows that are all zero, as most are.
fn idct<const K: usize>(coef: &[f32; 16], rows: u8) -> [[u8; K]; K] {
    let mut out = [[0u8; K]; K];
    match K {
        1 => out[0][0] = px(coef[0] / 8.0),
        2 => {
            let [a, b, c, d, ..] = *coef;
            out[0][0] = px((a + b + c + d) / 8.0);
            out[0][1] = px((a - b + c - d) / 8.0);
            out[1][0] = px((a + b - c - d) / 8.0);
            out[1][1] = px((a - b - c + d) / 8.0);
        }
        _ => {
            // Written as 4-wide rows (one row of x at a time) so that each step is one vector
            // multiply-add. Rows: t[v][x] = sum over u of F[v][u] M[x][u].
            let mut t = [[0f32; 4]; 4];
            for v in 0..4 {
                if rows & (1 << v) == 0 {
                    continue;
                }
                for u in 0..4 {
                    let c = coef[v * 4 + u];
                    for x in 0..4 {
                        t[v][x] += c * IDCT4[x][u];
                    }
                }
            }
            // Columns: f[y][x] = sum over v of M[y][v] t[v][x].
            for y in 0..4 {
                let mut row = [0f32; 4];
                for v in 0..4 {
                    if rows & (1 << v) == 0 {
                        continue;
                    }
                    for x in 0..4 {
                        row[x] += IDCT4[y][v] * t[v][x];
                    }
                }
                for x in 0..4 {
                    out[y][x] = px(row[x]);
                }
            }
        }
    }
    out
}

/// A sample from a transform's output, level-shifted and clamped.
#[inline(always)]
fn px(v: f32) -> u8 {
    (v + 128.5).clamp(0.0, 255.0) as u8
}

/// A flat block's one value: its DC coefficient's mean.
#[inline(always)]
fn mean(coef: &[f32; 16]) -> u8 {
    px(coef.first().copied().unwrap_or(0.0) / 8.0)
}

/// M[x][u] = C(u) cos((2x+1)uπ/8) / 2, C(0) = 1/√2, C(u>0) = 1.
const IDCT4: [[f32; 4]; 4] = {
    // cos(π/8), cos(2π/8), cos(3π/8), and 1/(2√2).
    const C1: f32 = 0.923_879_5;
    const C2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const C3: f32 = 0.382_683_43;
    const D: f32 = 0.353_553_38;
    [
        [D, C1 / 2.0, C2 / 2.0, C3 / 2.0],
        [D, C3 / 2.0, -C2 / 2.0, -C1 / 2.0],
        [D, -C3 / 2.0, -C2 / 2.0, C1 / 2.0],
        [D, -C1 / 2.0, C2 / 2.0, -C3 / 2.0],
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A noisy test picture, encoded with `sampling` (or grey).
    fn picture(
        w: u16,
        h: u16,
        sampling: Option<jpeg_encoder::SamplingFactor>,
        restart: u16,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut px = vec![0u8; usize::from(w) * usize::from(h) * 3];
        crate::source::testsrc::render(&mut px, w, h, 7);
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        if restart > 0 {
            enc.set_restart_interval(restart);
        }
        match sampling {
            Some(s) => {
                enc.set_sampling_factor(s);
                enc.encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
            }
            None => {
                let grey: Vec<u8> = px.chunks_exact(3).map(|p| p[1]).collect();
                enc.encode(&grey, w, h, jpeg_encoder::ColorType::Luma)
                    .unwrap();
                px = grey;
            }
        }
        (out, px)
    }

    /// The reference: decoded in full (zune-jpeg), as YCbCr planes, halved `level` times.
    fn reference(jpeg: &[u8], level: u8) -> Planes {
        use zune_jpeg::zune_core::colorspace::ColorSpace;
        use zune_jpeg::zune_core::options::DecoderOptions;
        let mut d = zune_jpeg::JpegDecoder::new_with_options(
            std::io::Cursor::new(jpeg),
            DecoderOptions::default(),
        );
        d.decode_headers().unwrap();
        let grey = d.input_colorspace() == Some(ColorSpace::Luma);
        let cs = if grey {
            ColorSpace::Luma
        } else {
            ColorSpace::YCbCr
        };
        d.set_options(DecoderOptions::default().jpeg_set_out_colorspace(cs));
        let px = d.decode().unwrap();
        let (w, h) = d.dimensions().unwrap();
        let mut p = Planes::from_interleaved(&px, w, h, if grey { 1 } else { 3 });
        for _ in 0..level {
            p = p.halve();
        }
        p
    }

    /// Peak signal to noise of `a` against `b` (at full resolution in every plane), per plane,
    /// in dB, at `a`'s resolution of each plane: a subsampled plane of ours is compared with
    /// the mean of the pixels each of its samples covers.
    fn psnr(a: &Planes, b: &Planes) -> Vec<f64> {
        assert_eq!((a.width, a.height), (b.width, b.height));
        a.planes
            .iter()
            .zip(&b.planes)
            .map(|(pa, pb)| {
                let (sx, sy) = (pa.step_x, pa.step_y);
                let (mut sum, mut n) = (0f64, 0f64);
                for y in (0..a.height + 1 - sy).step_by(sy) {
                    for x in (0..a.width + 1 - sx).step_by(sx) {
                        let mut mean = 0f64;
                        for dy in 0..sy {
                            for dx in 0..sx {
                                mean += f64::from(pb.at(x + dx, y + dy));
                            }
                        }
                        let d = f64::from(pa.at(x, y)) - mean / (sx * sy) as f64;
                        sum += d * d;
                        n += 1.0;
                    }
                }
                10.0 * (255.0f64 * 255.0 / (sum / n).max(1e-9)).log10()
            })
            .collect()
    }

    /// Luma as sharp as the full decode's (within rounding), chroma close (the reference
    /// upsamples chroma smoothly before averaging, so its edges differ a little).
    fn close(p: &[f64]) -> bool {
        p.iter().all(|&c| c > 33.0)
    }

    #[test]
    fn each_level_matches_a_full_decode_made_smaller() {
        use jpeg_encoder::SamplingFactor as S;
        for (sampling, name) in [
            (Some(S::F_2_2), "4:2:0"),
            (Some(S::F_2_1), "4:2:2"),
            (Some(S::F_1_1), "4:4:4"),
            (Some(S::F_1_2), "4:4:0"),
            (None, "grey"),
        ] {
            for (w, h) in [(640u16, 480u16), (333, 211)] {
                let (jpeg, _) = picture(w, h, sampling, 0);
                for level in 1..=3u8 {
                    let ours = decode(&jpeg, level, 1 << 22).unwrap();
                    assert_eq!(
                        (ours.width, ours.height),
                        (usize::from(w) >> level, usize::from(h) >> level)
                    );
                    let p = psnr(&ours, &reference(&jpeg, level));
                    eprintln!("{name} {w}x{h} at level {level}: {p:.1?} dB");
                    assert!(close(&p), "{name} {w}x{h} at level {level}: {p:.1?} dB");
                }
            }
        }
    }

    #[test]
    fn restart_intervals_and_missing_tables_decode() {
        use jpeg_encoder::SamplingFactor as S;
        let (jpeg, _) = picture(320, 240, Some(S::F_2_2), 3);
        let p = psnr(&decode(&jpeg, 1, 1 << 22).unwrap(), &reference(&jpeg, 1));
        assert!(close(&p), "restart intervals: {p:.1?} dB");
        // A USB webcam's frame: the same picture without its DHT segments.
        let (jpeg, _) = picture(320, 240, Some(S::F_2_1), 0);
        let stripped = crate::testjpeg::without_huffman_tables(&jpeg);
        assert!(stripped.len() < jpeg.len());
        let p = psnr(
            &decode(&stripped, 2, 1 << 22).unwrap(),
            &reference(&jpeg, 2),
        );
        assert!(close(&p), "standard tables: {p:.1?} dB");
    }

    #[test]
    fn other_kinds_are_refused_for_the_long_way() {
        let (jpeg, _) = picture(64, 48, Some(jpeg_encoder::SamplingFactor::F_2_2), 0);
        assert!(decode(&jpeg, 1, 64 * 48).is_ok());
        assert_eq!(
            decode(&jpeg, 1, 64 * 47).err(),
            Some(Refused::TooLarge(64, 48))
        );
        let mut progressive = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut progressive, 80);
        enc.set_progressive(true);
        enc.encode(&[100u8; 64 * 48 * 3], 64, 48, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        assert!(matches!(
            decode(&progressive, 1, 1 << 20),
            Err(Refused::Unsupported(_))
        ));
        assert!(matches!(decode(b"", 1, 1 << 20), Err(Refused::Bad(_))));
    }

    #[test]
    fn any_bytes_are_an_answer_never_a_panic() {
        let (good, _) = picture(96, 64, Some(jpeg_encoder::SamplingFactor::F_2_2), 2);
        for cut in 0..good.len() {
            for level in 1..=3 {
                let _ = decode(good.get(..cut).unwrap(), level, 1 << 20);
            }
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..3000 {
            let mut bad = good.clone();
            for _ in 0..1 + (seed % 6) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % bad.len();
                bad[i] = (seed >> 32) as u8;
            }
            if let Ok(p) = decode(&bad, 1 + (seed % 3) as u8, 1 << 20) {
                assert!(p.planes.iter().all(|p| p.px.len() <= 1 << 20));
            }
        }
    }

    #[test]
    fn a_truncated_scan_keeps_what_arrived_and_greys_the_rest() {
        // Without restart markers, and with them (past the end, no marker is found: the scan
        // stops there too).
        for restart in [0, 2] {
            let (jpeg, _) = picture(256, 256, Some(jpeg_encoder::SamplingFactor::F_2_2), restart);
            let half = decode(jpeg.get(..jpeg.len() / 2).unwrap(), 3, 1 << 20).unwrap();
            let full = decode(&jpeg, 3, 1 << 20).unwrap();
            let luma = |p: &Planes, y: usize| p.planes[0].at(5, y);
            assert_eq!(
                luma(&half, 1),
                luma(&full, 1),
                "the top arrived ({restart})"
            );
            assert_eq!(luma(&half, 31), 128, "the bottom is grey ({restart})");
        }
    }
}
