//! `scenario transcode`: what a smaller size costs per frame, the relay's way
//! (`mjpeg_relay::scale::shrink`: decode, halve, encode, in this process on one core) side by
//! side with ffmpeg doing the same job on the same frames (`ffmpeg -f mjpeg -i - -vf
//! scale=iw/N:ih/N -f mjpeg -`, the tool go2rtc and Frigate start for it), in turn (`--pairs`).
//! CPU time per frame (ffmpeg's start-up, measured on one frame, taken off), the share of one
//! core at 30 fps, and the bytes per frame out. ffmpeg twice: as the command (its own
//! default quality, which makes much smaller, blockier frames) and with `-q:v 3`, which makes
//! frames of about the size the relay's quality 80 makes: the same job.
//!
//! The frames: `--frames FILE.mjpeg` (concatenated JPEGs), or, by default, 300 each of ffmpeg's
//! `testsrc2` with sensor-like noise at 640x480 and 1280x720 (`-q:v 5`: 24 and 54 KB a frame).

use crate::args::{flag, num};
use mjpeg_relay::scale::shrink;
use std::io::Write;
use std::process::{Command, Stdio};

/// CPU seconds (user + system) of this process's threads (`self`) or its waited-for children.
fn cpu(children: bool) -> f64 {
    // SAFETY: getrusage fills one struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_THREAD
    };
    unsafe { libc::getrusage(who, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The JPEGs of a concatenated MJPEG file.
fn split(data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut parser = mjpeg_relay::parser::Parser::new(8 << 20);
    parser.push(data, &mut |e| {
        if let mjpeg_relay::parser::Event::Frame(f) = e {
            frames.push(f);
        }
    });
    frames
}

/// ffmpeg's CPU seconds and output bytes for `input` with `args` (after `-i -`).
fn ffmpeg(input: &[u8], args: &[String]) -> Result<(f64, usize), String> {
    let before = cpu(true);
    let mut child = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-f", "mjpeg", "-i", "-"])
        .args(args)
        .args(["-f", "mjpeg", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = feeder.join();
    Ok((cpu(true) - before, out.stdout.len()))
}

pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    let pairs: usize = num(cx.args, "--pairs", 1)?;
    let inputs: Vec<(String, Vec<u8>)> = match flag(cx.args, "--frames") {
        Some(path) => vec![(
            path.to_string(),
            std::fs::read(path).map_err(|e| format!("{path}: {e}"))?,
        )],
        None => ["640x480", "1280x720"]
            .iter()
            .map(|size| {
                let out = Command::new("ffmpeg")
                    .args(["-loglevel", "error", "-f", "lavfi", "-i"])
                    .arg(format!("testsrc2=size={size}:rate=30,noise=alls=5:allf=t"))
                    .args(["-frames:v", "300", "-q:v", "5", "-f", "mjpeg", "-"])
                    .output()
                    .map_err(|e| format!("ffmpeg: {e}"))?;
                Ok((size.to_string(), out.stdout))
            })
            .collect::<Result<_, String>>()?,
    };
    for (name, data) in &inputs {
        let frames = split(data);
        let n = frames.len();
        if n < 2 {
            return Err(format!("{name}: fewer than two frames"));
        }
        let first = frames[0].clone();
        let avg_in = data.len() / n;
        for level in 1..=3u8 {
            let div = 1u32 << level;
            for _ in 0..pairs {
                // The relay's way, on this thread.
                let c0 = cpu(false);
                let mut out = 0;
                for f in &frames {
                    out += shrink(f, level, 80, 40 << 20)
                        .map_err(|e| format!("{name}: {e}"))?
                        .len();
                }
                let ours = (cpu(false) - c0) / n as f64;
                println!(
                    "transcode {name} ({avg_in} B) to 1/{div}, relay (quality 80): {:.2} ms CPU per \
                     frame, {:.1}% of a core at 30 fps, {} B out",
                    ours * 1e3,
                    ours * 30.0 * 100.0,
                    out / n
                );
                for (label, extra) in [
                    ("ffmpeg (the issue's command)", vec![]),
                    ("ffmpeg -q:v 3", vec!["-q:v".to_string(), "3".into()]),
                ] {
                    let mut args = vec!["-vf".to_string(), format!("scale=iw/{div}:ih/{div}")];
                    args.extend(extra);
                    let (all, bytes) = ffmpeg(data, &args)?;
                    let (one, _) = ffmpeg(&first, &args)?;
                    let per = (all - one) / (n - 1) as f64;
                    println!(
                        "transcode {name} ({avg_in} B) to 1/{div}, {label}: {:.2} ms CPU per frame, \
                         {:.1}% of a core at 30 fps, {} B out (start-up {:.0} ms taken off)",
                        per * 1e3,
                        per * 30.0 * 100.0,
                        bytes / n,
                        one * 1e3
                    );
                }
            }
        }
    }
    Ok(())
}
