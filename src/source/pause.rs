//! When a source may stop, in one place: a `--fallback` not needed now (standby: a source
//! before it in the chain is up, decided by [`crate::failover::standby`]) and an
//! `--on-demand` stream nobody watches (idle, [`crate::hub::Stream::idle`]). A source that
//! makes its own frames waits the pause out ([`wait_while_paused`]) before each frame; one that
//! dials waits it out before each connect and hangs up by [`Pauses::hang_up_rule`] while
//! connected. Sources see only the predicates, never the chain or the stream.

use crate::feed::{SourceFeed, SourceState};
use crate::shutdown::Shutdown;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// True while a source need not run; see [`crate::failover::standby`] and
/// [`Stream::idle`](crate::hub::Stream::idle).
pub type Predicate = Arc<dyn Fn() -> bool + Send + Sync>;

/// How long a fallback stays connected after a preferred source is up again, so one stray
/// frame of a flapping primary does not make it hang up.
const STANDBY_GRACE: Duration = Duration::from_secs(1);

/// Why a source may stop for now, each a predicate its own loop asks every 100 ms or so
/// while paused, and after every read while running.
#[derive(Clone, Default)]
pub struct Pauses {
    /// A `--fallback` while a source before it is up (see [`crate::failover::standby`]).
    pub standby: Option<Predicate>,
    /// `--on-demand`: the served stream has had nobody watching for LINGER ([`Stream::idle`](crate::hub::Stream::idle)).
    pub idle: Option<Predicate>,
}

/// What a paused source is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    Standby,
    Idle,
}

impl Pauses {
    /// Why the source may stop now, if it may. Nobody watching wins: an unwatched fallback
    /// is idle, whatever the chain says.
    pub fn now(&self) -> Option<Pause> {
        if self.idle.as_ref().is_some_and(|f| f()) {
            Some(Pause::Idle)
        } else if self.standby.as_ref().is_some_and(|f| f()) {
            Some(Pause::Standby)
        } else {
            None
        }
    }

    /// For a connected source: when to hang up. At once when nobody watches any more (LINGER
    /// has passed already); once a preferred source has been up for [`STANDBY_GRACE`]. `None`
    /// when the source never pauses.
    pub fn hang_up_rule(&self) -> Option<Box<dyn FnMut() -> bool + Send>> {
        if self.standby.is_none() && self.idle.is_none() {
            return None;
        }
        let pauses = self.clone();
        let mut since: Option<Instant> = None;
        Some(Box::new(move || match pauses.now() {
            Some(Pause::Idle) => true,
            Some(Pause::Standby) => {
                since.get_or_insert_with(Instant::now).elapsed() >= STANDBY_GRACE
            }
            None => {
                since = None;
                false
            }
        }))
    }
}

/// For a source that makes its own frames (`testsrc`, `file:`): while it is paused (a
/// `--fallback` not needed, or `--on-demand` with nobody watching) it makes none (encoding a
/// test pattern at 15 fps for nobody costs a Pi a good share of a core). Returns at once when
/// not paused; `true` means shutdown.
/// `resume` is the state once it goes on: `live` for a source that makes frames at once,
/// `connecting` for one that dials (which then also shows a STARTING picture to whoever came).
pub fn wait_while_paused(
    pauses: &Pauses,
    feed: &SourceFeed,
    shutdown: &Shutdown,
    resume: SourceState,
) -> bool {
    let Some(first) = pauses.now() else {
        return false;
    };
    let info = feed.source_info();
    let mut shown = None;
    let mut pause = Some(first);
    while let Some(p) = pause {
        if shown != Some(p) {
            shown = Some(p);
            let state = match p {
                Pause::Standby => SourceState::Standby,
                Pause::Idle => SourceState::Idle,
            };
            feed.set_state(state, info.peer.clone());
            log::debug!("stream '{}': {} (paused)", feed.name, state.as_str());
        }
        if shutdown.sleep(Duration::from_millis(100)) {
            return true;
        }
        pause = pauses.now();
    }
    if shown == Some(Pause::Idle) {
        feed.starts.fetch_add(1, Relaxed);
        if resume == SourceState::Connecting {
            feed.starting.store(true, Relaxed);
        }
        log::info!(
            "stream '{}': someone watches: starting the source",
            feed.name
        );
    }
    let peer = (resume == SourceState::Live).then_some(info.peer).flatten();
    feed.set_state(resume, peer);
    false
}
