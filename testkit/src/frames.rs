//! Frames to send: numbered JPEGs padded to a size, a part as gstreamer's `multipartmux`
//! writes it, and webcam-like frames (no Huffman tables) for the sizes' tests.

use crate::*;
use mjpeg_relay::parser::{Event, Parser};
use mjpeg_relay::testjpeg::jpeg_with_seq;
use std::process::Command;
use std::time::Duration;

/// Padding for frame `seq`, so frame sizes vary.
pub fn pad_for(seq: u64, base: usize) -> usize {
    base + (seq as usize * 7919) % 2000
}

/// The frame the test upstream sends as number `seq`.
pub fn frame(seq: u64, base: usize) -> Vec<u8> {
    jpeg_with_seq(seq, pad_for(seq, base))
}

/// One multipart part as gstreamer's multipartmux writes it.
pub fn gst_part(jpeg: &[u8]) -> Vec<u8> {
    let mut part = format!(
        "--spionisto\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    )
    .into_bytes();
    part.extend_from_slice(jpeg);
    part.extend_from_slice(b"\r\n");
    part
}

/// A 640x480 picture (the relay's test pattern), numbered `seq` in a COM segment as the
/// other test frames are ([`mjpeg_relay::testjpeg::seq_of`] reads it back).
pub fn vga(seq: u64) -> Vec<u8> {
    use std::sync::OnceLock;
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let mut px = vec![0u8; 640 * 480 * 3];
        mjpeg_relay::source::testsrc::render(&mut px, 640, 480, 3);
        mjpeg_relay::source::testsrc::encode(&px, 640, 480).unwrap()
    });
    mjpeg_relay::testjpeg::tagged(base, seq.to_string().as_bytes(), 0)
}

pub use mjpeg_relay::testjpeg::without_huffman_tables;

pub fn has_huffman_tables(jpeg: &[u8]) -> bool {
    mjpeg_relay::jpeg::segments(jpeg).any(|(m, _)| m == 0xC4)
}

/// `n` frames as a USB webcam sends them: ffmpeg's 640x480 MJPEG with the standard Huffman
/// tables (`-huffman default`), the tables then taken out.
pub fn webcam_frames(n: usize) -> Vec<Vec<u8>> {
    require_tool("ffmpeg");
    let out = run_with_timeout(
        Command::new("ffmpeg").args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x480:rate=10",
            "-frames:v",
            &n.to_string(),
            "-c:v",
            "mjpeg",
            "-huffman",
            "default",
            "-q:v",
            "5",
            "-f",
            "mjpeg",
            "-",
        ]),
        Duration::from_secs(30),
    );
    let mut parser = Parser::new(8 << 20);
    let mut made = Vec::new();
    parser.push(&out.stdout, &mut |e| {
        if let Event::Frame(f) = e {
            made.push(without_huffman_tables(&f));
        }
    });
    assert!(made.len() + 5 >= n, "{} frames from ffmpeg", made.len());
    made
}
