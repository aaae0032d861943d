//! Sources: where frames come from. Each source owns its threads and its I/O, runs the bytes
//! through the sans-IO [`Parser`](crate::parser::Parser) ([`pump`]), and publishes frames to
//! its [`SourceFeed`]. Nothing flows back: sources never see clients or streams, only the
//! feed they fill and the [`Pauses`] that say when they may stop.
//!
//! One file per kind ([`testsrc`], [`stdin`], [`tcp_listen`], [`file`], [`http_pull`],
//! [`exec`]; `tcp:` and `unix:` are [`reconnect`]'s own connectors), and beside them the
//! pieces they share: `spec` parses `--source`, [`redact`] keeps secrets out of what is
//! shown of it, [`pump`] runs a connection's bytes through the parser, [`reconnect`] is the
//! dial-pump-back-off loop, [`pause`] is when a source may stop (a fallback on standby, a
//! stream nobody watches) and how it does. This file starts a source of any kind.
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
mod pause;
pub mod pump;
pub mod reconnect;
mod redact;
mod spec;
pub mod stdin;
pub mod tcp_listen;
pub mod testsrc;

pub use pause::{wait_while_paused, Pause, Pauses, Predicate};
pub use pump::Pump;
pub use redact::redact;
pub use spec::SourceSpec;

use crate::feed::SourceFeed;
use crate::shutdown::Shutdown;
use std::io;
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

/// Starts the source filling `feed`, or says why it cannot (the caller reports it and exits).
pub fn start(
    spec: &SourceSpec,
    feed: Arc<SourceFeed>,
    cfg: &SourceConfig,
    shutdown: Shutdown,
) -> io::Result<()> {
    if matches!(spec, SourceSpec::Stdin | SourceSpec::TcpListen(_)) {
        feed.push.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    match spec {
        SourceSpec::TestSrc => testsrc::start(feed, cfg, shutdown),
        SourceSpec::Stdin => stdin::start(feed, cfg),
        SourceSpec::TcpListen(addr) => tcp_listen::start(feed, addr, cfg).map(drop),
        SourceSpec::File(path) => file::start(feed, path.clone(), cfg, shutdown),
        SourceSpec::Tcp(addr) => {
            let (addr, timeout) = (addr.clone(), cfg.source_timeout);
            let what = format!("tcp {addr}");
            reconnect::start(
                feed,
                cfg,
                shutdown,
                (what, reconnect::Attempt::Connect),
                move || reconnect::connect_tcp(&addr, timeout),
            )
        }
        SourceSpec::Unix(path) => {
            let (path, timeout) = (path.clone(), cfg.source_timeout);
            let what = format!("unix {}", path.display());
            reconnect::start(
                feed,
                cfg,
                shutdown,
                (what, reconnect::Attempt::Connect),
                move || reconnect::connect_unix(&path, timeout),
            )
        }
        SourceSpec::Http(url) => {
            let mut client = http_pull::Client::new(&feed.name, url, cfg.source_timeout, cfg.fps);
            let what = redact(url);
            let how = (what, reconnect::Attempt::Connect);
            reconnect::start(feed, cfg, shutdown, how, move || client.connect())
        }
        SourceSpec::Exec(cmd) => {
            let runner = exec::Runner::new(&feed.name, cmd, cfg.source_timeout, shutdown.clone());
            let what = format!("command '{}'", redact(cmd));
            let how = (what, reconnect::Attempt::Command);
            reconnect::start(feed, cfg, shutdown, how, move || runner.spawn())
        }
    }
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
