//! `--fallback SPEC`: a stream fed by the first of several sources that works.
//!
//! An edge relay pulling an origin should survive losing it: with `--source PRIMARY
//! --fallback SPARE`, when the primary is lost (its connection ends, it cannot be reached, or
//! it falls silent for `--source-timeout`), the stream switches to the first fallback that
//! delivers frames, and back to the primary as soon as it delivers again. Viewers stay
//! connected throughout and see at most `--source-timeout` plus one connect of stale picture:
//! the NO SIGNAL picture waits that long for such a stream.
//!
//! How: each source of the chain fills a [`SourceFeed`] of its own ([`Chain`]) that no viewer
//! sees, exactly as it would fill a stream's, so every source kind works unchanged. One thread
//! per chained stream forwards the frames of the first member that is *up* (live, with a frame
//! younger than `--source-timeout`) to the served stream's feed: the same `Arc<Frame>`, no
//! copy. It sleeps on a [`Subscription`] to the chain's members, so it wakes for their frames
//! only (and every 100 ms, to notice a member falling silent and a shutdown). A
//! fallback that dials out (`tcp:`, `unix:`, `http://`, `exec:`) stays disconnected while a
//! member before it is up ([`standby`]), so an edge does not pull from two origins at once;
//! `testsrc` and `file:` make no frames meanwhile (encoding a test pattern for nobody costs a
//! small host a good share of a core); the push kinds (`tcp-listen:`, `stdin`) cannot be
//! switched off, so they run all along and are only forwarded when needed.
//!
//! An upstream relay whose own camera is down keeps sending its NO SIGNAL picture; the
//! source counts as down while it does ([`crate::source::Pump::feed`]), so an edge fails over
//! when the camera behind a live origin dies, not only when the origin does.

use crate::feed::{Rung, SourceFeed, SourceState, Subscription};
use crate::hub::{Chain, Stream};
use crate::shutdown::Shutdown;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Whether a member is up: live, with a frame younger than `timeout`.
fn up(m: &SourceFeed, timeout: Duration) -> bool {
    m.source_info().state == SourceState::Live && m.last_frame_age().is_some_and(|a| a < timeout)
}

/// For member `index`: true while it is not needed, i.e. a member before it is up, or none
/// of them has failed since it last started and `--source-timeout` has not passed since (a
/// primary gets that long to deliver its first frame before a fallback dials: at start-up,
/// and with `--on-demand` at every arrival, when the primary starts again). The reconnect loop
/// neither connects nor stays connected while this holds, and `testsrc` and `file:` make no
/// frames ([`crate::source::wait_while_paused`]).
pub fn standby(
    members: &[Arc<SourceFeed>],
    index: usize,
    timeout: Duration,
) -> impl Fn() -> bool + Send + Sync + 'static {
    let before: Vec<Arc<SourceFeed>> = members.iter().take(index).cloned().collect();
    move || {
        // A member before this one that is on standby is about to be called (its own check
        // sees what this one sees), and one that is live without a recent frame is on its way
        // (a `testsrc` or `file:` just called back) or about to be marked lost by its own
        // silence timeout: the members after it wait for that, rather than all start at once.
        // An idle one (on demand) is about to start for the viewer that woke this one.
        before.iter().any(|m| {
            up(m, timeout)
                || matches!(
                    m.source_info().state,
                    SourceState::Live | SourceState::Standby | SourceState::Idle
                )
        }) || before.iter().all(|m| {
            // Not failed since it (re)started: still connecting, or itself a fallback on
            // standby, or a `testsrc`/`file:` that has not made its first frame. `since`, not
            // the member's creation: an on-demand primary starts again at every arrival, and
            // counting from creation made every arrival start the fallback too.
            let info = m.source_info();
            !matches!(
                info.state,
                SourceState::Lost | SourceState::Failing | SourceState::Ended
            ) && info.since.elapsed() < timeout
        })
    }
}

/// Starts the forwarding thread of `stream`, whose [`Chain`] are `members` with `specs`
/// (redacted, for logs).
pub fn start(
    stream: Arc<Stream>,
    members: Vec<Arc<SourceFeed>>,
    specs: Vec<String>,
    timeout: Duration,
    shutdown: Shutdown,
) -> io::Result<()> {
    // A switch is noticed after --source-timeout at worst, then one connect (5 s at worst,
    // usually milliseconds); NO SIGNAL only after that.
    *stream.expected_gap.lock() = timeout + Duration::from_secs(1);
    let _ = stream.chain.set(Chain {
        members: members.clone(),
        current: Default::default(),
        switches: 0.into(),
        reason: Default::default(),
    });
    std::thread::Builder::new()
        .name(format!("failover-{}", stream.name))
        .stack_size(128 * 1024)
        .spawn(move || forward(&stream, &members, &specs, timeout, &shutdown))?;
    Ok(())
}

fn forward(
    stream: &Stream,
    members: &[Arc<SourceFeed>],
    specs: &[String],
    timeout: Duration,
    shutdown: &Shutdown,
) {
    let Some(feeders) = stream.chain.get() else {
        return;
    };
    let feed = &stream.feed;
    // Owned by this thread; woken by the members' publishes, and by nothing else.
    let mut doorbell = Subscription::new(members.iter().cloned());
    // The member whose frames are forwarded now, and the last one that was.
    let mut current: Option<usize> = None;
    let mut last_fed: Option<usize> = None;
    // The generation of each member last forwarded.
    let mut sent = vec![0u64; members.len()];
    loop {
        if doorbell.wait(Duration::from_millis(100)) == Rung::Closed || shutdown.is_stopping() {
            return;
        }
        let active = members.iter().position(|m| up(m, timeout));
        if active != current {
            let why = |i: usize| {
                let info = members[i].source_info();
                match info.last_error {
                    // Shown in /status: a command's words only where its spec is.
                    Some((e, _)) => format!(
                        "{} is {}: {}",
                        specs[i],
                        info.state.as_str(),
                        e.shown(false)
                    ),
                    None => format!("{} is {}", specs[i], info.state.as_str()),
                }
            };
            // A switch is a change of the member that feeds; gaps with none do not count.
            let reason = match (last_fed, active) {
                (Some(j), Some(0)) if j != 0 => Some(format!("back to the primary {}", specs[0])),
                (Some(j), Some(i)) if j != i => {
                    Some(format!("switched to {} ({})", specs[i], why(j)))
                }
                (None, Some(i)) if i > 0 => Some(format!("fed by {} ({})", specs[i], why(0))),
                (_, None) => current.map(|c| format!("no source delivers frames ({})", why(c))),
                _ => None,
            };
            if let Some(reason) = reason {
                log::warn!("stream '{}': {reason}", stream.name);
                *feeders.reason.lock() = reason;
            }
            if let Some(i) = active {
                // A switch is a change of the member that feeds, and so is a stream fed by a
                // fallback from the start: its primary never delivered, and an alert on
                // `source_switches_total` must see that.
                if last_fed.map_or(i > 0, |j| j != i) {
                    feeders.switches.fetch_add(1, Relaxed);
                }
                last_fed = Some(i);
            }
            current = active;
            feeders.current.store(active);
        }
        // /status shows the member that feeds the stream, or the primary while none does.
        let shown = &members[current.unwrap_or(0)];
        // An on-demand primary starting for a viewer: the stream's viewers see STARTING.
        if shown.starting.load(Relaxed) && !feed.starting.load(Relaxed) {
            feed.starting.store(true, Relaxed);
        }
        let info = shown.source_info();
        feed.set_state(info.state, info.peer);
        if let Some(f) = info.format {
            feed.set_format(f);
        }
        feed.set_last_error(info.last_error);
        if let Some(i) = current {
            if let Some((frame, g)) = members[i].slot.latest() {
                if g > sent[i] {
                    sent[i] = g;
                    feed.stats
                        .bytes_in
                        .fetch_add(frame.jpeg().len() as u64, Relaxed);
                    feed.publish_frame(frame);
                }
            }
        }
    }
}
