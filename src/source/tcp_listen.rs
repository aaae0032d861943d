//! `tcp-listen:ADDR`: the upstream connects to us, as gstreamer's `tcpclientsink` does.
//!
//! One upstream at a time. When a new connection arrives the old one is shut down and replaced:
//! that is what a restarted gstreamer pipeline looks like from here, and the old socket may not
//! have noticed yet that its peer is gone. Viewers are not touched; they just see the next frame.

use super::{spawn_source_thread, Pump, SourceConfig};
use crate::feed::{SourceFeed, SourceState};
use parking_lot::Mutex;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;

/// Binds `addr` and starts accepting upstreams. Returns the bound address (useful with port 0).
pub fn start(feed: Arc<SourceFeed>, addr: &str, cfg: &SourceConfig) -> io::Result<String> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen for the upstream on {addr}: {e} (is another relay running?)"),
        )
    })?;
    let local = listener.local_addr()?.to_string();
    log::info!(
        "stream '{}': waiting for the upstream on tcp {local}",
        feed.name
    );
    let (max_frame, silence) = (cfg.max_frame_bytes, cfg.source_timeout);
    // The current upstream: its id and a handle to shut it down when a new one replaces it.
    let current: Arc<(AtomicU64, Mutex<Option<TcpStream>>)> = Arc::default();
    let name = format!("src-{}-accept", feed.name);
    spawn_source_thread(name, move || {
        for conn in listener.incoming() {
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: log and keep accepting, after a pause.
                    log::warn!("stream '{}': accepting an upstream failed: {e}", feed.name);
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    continue;
                }
            };
            let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            // A second handle, kept only to shut this upstream down when a new one replaces it.
            let handle = match conn.try_clone() {
                Ok(h) => h,
                Err(e) => {
                    log::error!("stream '{}': dropping upstream {peer}: {e}", feed.name);
                    continue;
                }
            };
            // Which upstream is current, and the state that says so, change together under
            // this lock: a reader that ends at the same moment cannot mark the new one lost.
            let mut guard = current.1.lock();
            let id = current.0.fetch_add(1, SeqCst) + 1;
            let old = guard.replace(handle);
            feed.stats.connections.fetch_add(1, SeqCst);
            feed.set_state(SourceState::Live, Some(peer.clone()));
            drop(guard);
            if let Some(old) = old {
                log::info!(
                    "stream '{}': new upstream from {peer} replaces the previous one",
                    feed.name
                );
                let _ = old.shutdown(Shutdown::Both);
            } else {
                log::info!("stream '{}': upstream connected from {peer}", feed.name);
            }
            let feed = feed.clone();
            let current = current.clone();
            let thread = format!("src-{}-read", feed.name);
            let spawned = spawn_source_thread(thread, move || {
                read_upstream(&feed, conn, &peer, (max_frame, silence), id, &current)
            });
            if let Err(e) = spawned {
                log::error!("cannot start a reader thread for the upstream: {e}");
            }
        }
    })?;
    Ok(local)
}

fn read_upstream(
    feed: &Arc<SourceFeed>,
    mut conn: TcpStream,
    peer: &str,
    (max_frame, silence): (usize, std::time::Duration),
    id: u64,
    current: &(AtomicU64, Mutex<Option<TcpStream>>),
) {
    let started = Instant::now();
    let mut pump = Pump::new(feed.clone(), max_frame, format!("upstream {peer}"));
    // A connected but silent upstream is dropped, so a restarted one is not kept waiting
    // behind a half-open connection and /status says "lost", not "live".
    let result = match conn.set_read_timeout(Some(silence)) {
        Ok(()) => pump.run_until_silent(&mut conn, Some(silence)),
        Err(e) => Err(e),
    };
    let how = match &result {
        Ok(()) => "closed the connection".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => format!("dropped: {e}"),
        Err(e) => format!("connection failed: {e}"),
    };
    {
        let mut handle = current.1.lock();
        if current.0.load(SeqCst) != id {
            return; // replaced: the new upstream owns the state now
        }
        // Our connection is over: drop the shutdown handle too, or its descriptor stays open
        // until the next upstream arrives. The state changes under the same lock as above.
        *handle = None;
        feed.set_error(format!("upstream {peer} {how}"));
        feed.set_state(SourceState::Lost, None);
    }
    if pump.frames() == 0 {
        log::warn!(
            "stream '{}': upstream {peer} {how} after {:.1} s without sending one whole JPEG; \
             is it sending MJPEG (multipart or raw JPEG)?",
            feed.name,
            started.elapsed().as_secs_f64()
        );
    } else {
        log::warn!(
            "stream '{}': upstream {peer} {how} after {:.1} s; waiting for it to reconnect",
            feed.name,
            started.elapsed().as_secs_f64()
        );
    }
}
