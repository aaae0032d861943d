//! `testsrc`: a built-in moving test pattern, the embedded default, so `mjpeg-relay` with no
//! arguments shows a live stream with no camera.
//!
//! Each frame has scrolling colour bars (motion is obvious), a bouncing square, the frame number
//! and a UTC clock in large digits, and the frame number again as a 16-bit bar code along the
//! bottom edge (white cell = 1, most significant bit first) so a test can read it back from
//! pixels. Frames are produced on absolute deadlines, so the rate does not drift; if encoding
//! falls behind, late frames are skipped rather than bunched.

use super::{spawn_source_thread, SourceConfig};
use crate::feed::{SourceFeed, SourceState};
use crate::font::{draw_text, fill};
use crate::shutdown::Shutdown;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Number of cells in the bottom bar code.
pub const BARCODE_BITS: u32 = 16;

pub fn start(feed: Arc<SourceFeed>, cfg: &SourceConfig, shutdown: Shutdown) -> io::Result<()> {
    let (w, h, fps) = (cfg.width, cfg.height, cfg.fps);
    let pauses = cfg.pauses.clone();
    let name = format!("src-{}-testsrc", feed.name);
    spawn_source_thread(name, move || {
        feed.set_state(SourceState::Live, Some(format!("testsrc {w}x{h}@{fps}")));
        feed.set_format("testsrc JPEG".into());
        feed.stats
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let interval = Duration::from_secs_f64(1.0 / fps);
        let mut pixels = vec![0u8; usize::from(w) * usize::from(h) * 3];
        let mut n: u64 = 0;
        let mut next = Instant::now();
        loop {
            if super::wait_while_paused(&pauses, &feed, &shutdown, SourceState::Live) {
                return;
            }
            render(&mut pixels, w, h, n);
            match encode(&pixels, w, h) {
                Ok(jpeg) => {
                    feed.stats
                        .bytes_in
                        .fetch_add(jpeg.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    feed.publish(&jpeg);
                }
                Err(e) => log::error!("testsrc: encoding failed: {e}"),
            }
            n += 1;
            next += interval;
            let now = Instant::now();
            if next < now {
                next = now; // fell behind: skip, do not burst
            }
            if shutdown.sleep(next - now) {
                return;
            }
        }
    })?;
    Ok(())
}

pub fn encode(pixels: &[u8], w: u16, h: u16) -> Result<Vec<u8>, jpeg_encoder::EncodingError> {
    let mut out = Vec::with_capacity(pixels.len() / 10);
    jpeg_encoder::Encoder::new(&mut out, 75).encode(pixels, w, h, jpeg_encoder::ColorType::Rgb)?;
    Ok(out)
}

const BARS: [[u8; 3]; 7] = [
    [192, 192, 192],
    [192, 192, 0],
    [0, 192, 192],
    [0, 192, 0],
    [192, 0, 192],
    [192, 0, 0],
    [0, 0, 192],
];

/// Draws frame `n` into an RGB buffer of `w`x`h`.
pub fn render(px: &mut [u8], w: u16, h: u16, n: u64) {
    let (w, h) = (usize::from(w), usize::from(h));
    let bar_w = (w / BARS.len()).max(1);
    let shift = (n as usize * 4) % w.max(1);
    for y in 0..h {
        let row = &mut px[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            let c = BARS[((x + shift) % w / bar_w).min(BARS.len() - 1)];
            row[x * 3..x * 3 + 3].copy_from_slice(&c);
        }
    }
    // Bouncing square.
    let side = (h / 6).max(4);
    let span_x = w.saturating_sub(side).max(1);
    let span_y = h.saturating_sub(side).max(1);
    let bx = bounce(n as usize * 7, span_x);
    let by = bounce(n as usize * 5, span_y);
    fill(px, w, h, bx, by, side, side, [255, 255, 255]);

    // Frame number and clock in a dark box.
    let scale = (h / 120).max(1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    let text1 = format!("#{n}");
    let text2 = format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        now.subsec_millis()
    );
    let box_h = scale * 20;
    let box_w = (scale * 6 * text2.len().max(text1.len()) + scale * 4).min(w);
    fill(px, w, h, 0, 0, box_w, box_h, [16, 16, 16]);
    draw_text(px, w, h, scale * 2, scale, scale, &text1, [255, 255, 255]);
    draw_text(
        px,
        w,
        h,
        scale * 2,
        scale * 11,
        scale,
        &text2,
        [255, 255, 255],
    );

    // Bar code of the frame number along the bottom.
    let cell = w / BARCODE_BITS as usize;
    let code_h = (h / 24).max(2);
    for bit in 0..BARCODE_BITS {
        let on = (n >> (BARCODE_BITS - 1 - bit)) & 1 == 1;
        let c = if on { [255, 255, 255] } else { [0, 0, 0] };
        fill(px, w, h, bit as usize * cell, h - code_h, cell, code_h, c);
    }
}

/// Reads the bar code back from an RGB buffer (the inverse of the bottom strip of `render`).
pub fn read_barcode(px: &[u8], w: usize, h: usize) -> u64 {
    let cell = w / BARCODE_BITS as usize;
    let code_h = (h / 24).max(2);
    let y = h - code_h / 2 - 1;
    let mut n = 0u64;
    for bit in 0..BARCODE_BITS as usize {
        let x = bit * cell + cell / 2;
        let i = (y * w + x) * 3;
        let luma = (u32::from(px[i]) + u32::from(px[i + 1]) + u32::from(px[i + 2])) / 3;
        n = (n << 1) | u64::from(luma > 128);
    }
    n
}

fn bounce(pos: usize, span: usize) -> usize {
    let p = pos % (2 * span);
    if p < span {
        p
    } else {
        2 * span - p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barcode_round_trips_and_jpeg_is_whole() {
        let (w, h) = (320u16, 240u16);
        let mut px = vec![0u8; 320 * 240 * 3];
        for n in [0u64, 1, 77, 4242, 65535] {
            render(&mut px, w, h, n);
            assert_eq!(read_barcode(&px, 320, 240), n);
        }
        let jpeg = encode(&px, w, h).unwrap();
        assert!(crate::testjpeg::is_whole_jpeg(&jpeg));
    }
}
