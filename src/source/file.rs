//! `file:PATH`: replay a recording at `--fps`, looping — for demos, tests, and reproducing a
//! bug with the exact bytes a camera sent.
//!
//! PATH is either a recorded stream (multipart or raw back-to-back JPEGs, whatever the parser
//! detects; e.g. `curl -o rec.mjpeg http://cam/stream` or `ffmpeg … -f mjpeg rec.mjpeg`), or a
//! directory whose `.jpg`/`.jpeg` files are played in name order. A recording is read in
//! chunks through the parser, never whole, so a long one costs no more memory than a frame.
//! Frames go out on absolute deadlines (no drift); the recording's own timing is not kept.

use super::{spawn_source_thread, SourceConfig};
use crate::feed::{SourceFeed, SourceState};
use crate::parser::{Event, Parser};
use crate::shutdown::Shutdown;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes read from a recording per call.
const CHUNK: usize = 64 * 1024;

pub fn start(
    feed: Arc<SourceFeed>,
    path: PathBuf,
    cfg: &SourceConfig,
    shutdown: Shutdown,
) -> io::Result<()> {
    check_playable(&path, cfg.max_frame_bytes)?;
    let interval = Duration::from_secs_f64(1.0 / cfg.fps);
    let max_frame = cfg.max_frame_bytes;
    let pauses = cfg.pauses.clone();
    let name = format!("src-{}-file", feed.name);
    spawn_source_thread(name, move || {
        let mut player = Player {
            feed: &feed,
            shutdown: &shutdown,
            interval,
            next: Instant::now(),
            pauses,
        };
        feed.set_state(SourceState::Live, Some(path.display().to_string()));
        feed.stats.connections.fetch_add(1, Relaxed);
        log::info!(
            "stream '{}': replaying {} at {:.1} fps, looping",
            feed.name,
            path.display(),
            1.0 / interval.as_secs_f64()
        );
        loop {
            let round = if path.is_dir() {
                player.play_dir(&path, max_frame)
            } else {
                player.play_file(&path, max_frame)
            };
            match round {
                Ok(Some(0)) => {
                    log::error!(
                        "stream '{}': {} holds no whole JPEG frame; nothing to replay",
                        feed.name,
                        path.display()
                    );
                    break;
                }
                Ok(Some(_)) => {}   // loop
                Ok(None) => return, // shutdown
                Err(e) => {
                    log::error!(
                        "stream '{}': cannot read {}: {e}",
                        feed.name,
                        path.display()
                    );
                    break;
                }
            }
        }
        feed.set_state(SourceState::Ended, None);
    })?;
    Ok(())
}

/// Refuses, at start-up, a recording or directory that holds no whole JPEG frame: such a
/// source could never show a picture, and exiting with the reason beats serving NO SIGNAL.
/// Reads up to the first frame (the whole file only when there is none).
fn check_playable(path: &Path, max_frame: usize) -> io::Result<()> {
    let refuse = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} {what}; file: needs a recorded MJPEG stream (multipart or raw JPEGs) or a \
                 directory of .jpg files, each at most --max-frame-bytes",
                path.display()
            ),
        )
    };
    let mut found = false;
    if path.is_dir() {
        for p in jpeg_files(path)? {
            if p.metadata().map(|m| m.len()).unwrap_or(0) > max_frame as u64 {
                continue;
            }
            if first_frame(&mut File::open(&p)?, max_frame)? {
                found = true;
                break;
            }
        }
        if !found {
            return Err(refuse("holds no .jpg/.jpeg file with a whole JPEG"));
        }
    } else if !first_frame(&mut File::open(path)?, max_frame)? {
        return Err(refuse("holds no whole JPEG frame"));
    }
    Ok(())
}

/// Whether `r` yields at least one whole frame; stops reading at the first.
fn first_frame(r: &mut impl Read, max_frame: usize) -> io::Result<bool> {
    let mut parser = Parser::new(max_frame);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        let mut found = false;
        parser.push(&buf[..n], &mut |e| found |= matches!(e, Event::Frame(_)));
        if found {
            return Ok(true);
        }
    }
}

/// The `.jpg`/`.jpeg` files of `dir`, in name order.
fn jpeg_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    files.sort();
    Ok(files)
}

struct Player<'a> {
    feed: &'a SourceFeed,
    shutdown: &'a Shutdown,
    interval: Duration,
    next: Instant,
    /// When to make no frames (see [`super::wait_while_paused`]).
    pauses: super::Pauses,
}

impl Player<'_> {
    /// Publishes `jpeg` at the next deadline. `false` means shutdown.
    fn show(&mut self, jpeg: &[u8]) -> bool {
        if super::wait_while_paused(&self.pauses, self.feed, self.shutdown, SourceState::Live) {
            return false;
        }
        let now = Instant::now();
        if self.next > now {
            if self.shutdown.sleep(self.next - now) {
                return false;
            }
        } else {
            self.next = now; // fell behind: skip ahead, do not burst
        }
        self.next += self.interval;
        self.feed
            .stats
            .bytes_in
            .fetch_add(jpeg.len() as u64, Relaxed);
        self.feed.publish(jpeg);
        true
    }

    /// One pass over a recording. `Some(frames shown)`, or `None` on shutdown.
    fn play_file(&mut self, path: &Path, max_frame: usize) -> io::Result<Option<u64>> {
        let mut f = File::open(path)?;
        let mut parser = Parser::new(max_frame);
        let mut buf = vec![0u8; CHUNK];
        // Frames found in one chunk; at most CHUNK bytes' worth, shown before reading on.
        let mut found: Vec<Vec<u8>> = Vec::new();
        let mut shown = 0;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(Some(shown));
            }
            parser.push(&buf[..n], &mut |e| {
                if let Event::Frame(j) = e {
                    found.push(j);
                }
            });
            if shown == 0 && found.is_empty() && parser.stats().frames == 0 {
                continue;
            }
            if shown == 0 && !found.is_empty() {
                self.feed.set_format(format!("file, {}", parser.format()));
            }
            for j in found.drain(..) {
                if !self.show(&j) {
                    return Ok(None);
                }
                shown += 1;
            }
        }
    }

    /// One pass over a directory of JPEG files, in name order.
    fn play_dir(&mut self, dir: &Path, max_frame: usize) -> io::Result<Option<u64>> {
        let files = jpeg_files(dir)?;
        self.feed.set_format("directory of JPEG files".into());
        let mut shown = 0;
        for p in files {
            let len = p.metadata().map(|m| m.len()).unwrap_or(0);
            if len > max_frame as u64 {
                log::debug!("skipping {}: over --max-frame-bytes", p.display());
                continue;
            }
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            // The same rules as a live upstream: only a whole JPEG is shown.
            let mut jpeg = None;
            Parser::new(max_frame).push(&bytes, &mut |e| {
                if let Event::Frame(j) = e {
                    jpeg.get_or_insert(j);
                }
            });
            let Some(jpeg) = jpeg else {
                log::debug!("skipping {}: not a whole JPEG", p.display());
                continue;
            };
            if !self.show(&jpeg) {
                return Ok(None);
            }
            shown += 1;
        }
        Ok(Some(shown))
    }
}
