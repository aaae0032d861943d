//! Sources: where frames come from. Each source owns its threads and its I/O, runs the bytes
//! through the sans-IO [`Parser`](crate::parser::Parser) ([`pump`]), and publishes frames to
//! its [`SourceFeed`]. Nothing flows back: sources never see clients or streams, only the
//! feed they fill and the [`Pauses`] that say when they may stop.
//!
//! One file per kind ([`testsrc`], [`stdin`], [`tcp_listen`], [`file`], [`http_pull`],
//! [`exec`]; `tcp:` and `unix:` are [`reconnect`]'s own connectors), and beside them the
//! pieces they share: [`spec`] parses `--source`, [`redact`] keeps secrets out of what is
//! shown of it, [`pump`] runs a connection's bytes through the parser, [`reconnect`] is the
//! dial-pump-back-off loop. This file starts a source of any kind and holds the pause logic.
//!
//! Every source thread is named `src-…` and spawned with [`SOURCE_STACK`]. A source has one
//! thread, with two exceptions: `tcp-listen` has a listener plus the reader of the current
//! upstream (briefly two readers while a new upstream replaces the old one), and `exec` adds a
//! thread that forwards the child's stderr to our log.
//!
//! Sources that dial out (`tcp:`, `unix:`, `http://`, `exec:`) share one reconnect loop
//! ([`reconnect`]): connect, pump until the upstream ends or falls silent for
//! `--source-timeout`, wait a backoff, try again. Viewers never notice more than a pause.

pub mod exec;
pub mod file;
pub mod http_pull;
pub mod pump;
pub mod reconnect;
mod redact;
mod spec;
pub mod stdin;
pub mod tcp_listen;
pub mod testsrc;

pub use pump::Pump;
pub use redact::redact;
pub use spec::SourceSpec;

use crate::feed::{SourceFeed, SourceState};
use crate::shutdown::Shutdown;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Stack for source threads: they hold a 64 KiB read buffer on the heap and call the parser
/// and the JPEG encoder, nothing recursive.
pub const SOURCE_STACK: usize = 256 * 1024;

/// Settings every source needs.
#[derive(Clone)]
pub struct SourceConfig {
    pub max_frame_bytes: usize,
    /// For `testsrc` and `file:`, and how often an `http://` URL that serves single
    /// pictures is polled.
    pub fps: f64,
    pub width: u16,
    pub height: u16,
    /// An upstream that sends no whole frame for this long is dropped and reconnected.
    pub source_timeout: Duration,
    /// When the source may stop: a `--fallback` not needed now, or (`--on-demand`) a stream
    /// nobody watches.
    pub pauses: Pauses,
}

/// Why a source may stop for now, each a predicate its own loop asks every 100 ms or so
/// while paused, and after every read while running.
#[derive(Clone, Default)]
pub struct Pauses {
    /// A `--fallback` while a source before it is up (see [`crate::failover::standby`]).
    pub standby: Option<reconnect::Standby>,
    /// `--on-demand`: the served stream has had nobody watching for LINGER ([`Stream::idle`]).
    pub idle: Option<reconnect::Standby>,
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
}

/// Starts the source of `stream`, or says why it cannot (the caller reports it and exits).
pub fn start(
    spec: &SourceSpec,
    feed: Arc<SourceFeed>,
    cfg: &SourceConfig,
    shutdown: Shutdown,
) -> io::Result<()> {
    match spec {
        SourceSpec::TestSrc => testsrc::start(feed, cfg, shutdown),
        SourceSpec::Stdin => stdin::start(feed, cfg),
        SourceSpec::TcpListen(addr) => tcp_listen::start(feed, addr, cfg).map(drop),
        SourceSpec::File(path) => file::start(feed, path.clone(), cfg, shutdown),
        SourceSpec::Tcp(addr) => {
            let (addr, timeout) = (addr.clone(), cfg.source_timeout);
            let what = format!("tcp {addr}");
            reconnect::start(feed, cfg, shutdown, what, move || {
                reconnect::connect_tcp(&addr, timeout)
            })
        }
        SourceSpec::Unix(path) => {
            let (path, timeout) = (path.clone(), cfg.source_timeout);
            let what = format!("unix {}", path.display());
            reconnect::start(feed, cfg, shutdown, what, move || {
                reconnect::connect_unix(&path, timeout)
            })
        }
        SourceSpec::Http(url) => {
            let mut client = http_pull::Client::new(&feed.name, url, cfg.source_timeout, cfg.fps);
            let what = redact(url);
            reconnect::start(feed, cfg, shutdown, what, move || client.connect())
        }
        SourceSpec::Exec(cmd) => {
            let runner = exec::Runner::new(&feed.name, cmd, cfg.source_timeout, shutdown.clone());
            let what = format!("command '{}'", redact(cmd));
            reconnect::start(feed, cfg, shutdown, what, move || runner.spawn())
        }
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
        if shutdown.sleep(std::time::Duration::from_millis(100)) {
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

/// Spawns a named source thread with the small source stack.
pub fn spawn_source_thread(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(SOURCE_STACK)
        .spawn(f)
}
