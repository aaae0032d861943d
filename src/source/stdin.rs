//! `stdin` (or `-`): MJPEG on standard input, for `gst-launch-1.0 … ! fdsink fd=1 | mjpeg-relay`.
//!
//! When the input ends the relay keeps serving but the stream is over: `/status` says `ended`
//! (with the reason in `last_error`), viewers get a SOURCE ENDED picture after
//! `--no-signal-after`, and `/snapshot` answers 503. Nothing restarts a pipe, so an ended
//! source is logged as the end it is; a shell pipeline is stopped with Ctrl-C or SIGTERM like
//! any other server.

use super::{spawn_source_thread, Pump, SourceConfig};
use crate::feed::{SourceFeed, SourceState};
use std::io;
use std::sync::Arc;

pub fn start(feed: Arc<SourceFeed>, cfg: &SourceConfig) -> io::Result<()> {
    let max_frame = cfg.max_frame_bytes;
    let name = format!("src-{}-stdin", feed.name);
    spawn_source_thread(name, move || {
        feed.set_state(SourceState::Live, Some("stdin".into()));
        feed.stats
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut pump = Pump::new(feed.clone(), max_frame, "stdin".into());
        let result = pump.run(&mut io::stdin().lock());
        let how = match result {
            Ok(()) => "reached end of input".to_string(),
            Err(e) => format!("read failed: {e}"),
        };
        if pump.frames() == 0 {
            log::error!(
                "stream '{}': stdin {how} without one whole JPEG; is the command before the pipe \
                 writing MJPEG to stdout (e.g. fdsink fd=1)?",
                feed.name
            );
        } else {
            log::warn!(
                "stream '{}': stdin {how}: the stream has ended (viewers get a SOURCE ENDED \
                 picture, /snapshot answers 503); restart the pipeline and the relay to resume",
                feed.name
            );
        }
        feed.set_error(format!("stdin {how}"));
        feed.set_state(SourceState::Ended, None);
    })?;
    Ok(())
}
