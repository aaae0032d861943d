//! One frame as a stream hands it to its clients: the JPEG, when it arrived, and the bytes a
//! client writes for it, laid out once for all clients ([`crate::multipart`]). Shared as
//! `Arc<Frame>` by the slot and every client that sends it, never copied per client.

use crate::multipart::Wire;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One JPEG frame as received from the upstream, shared by every client that sends it.
#[derive(Debug)]
pub struct Frame {
    /// Wall-clock capture time (for `X-Timestamp`): when the frame was completed here, or the
    /// camera's own time where the upstream sent one ([`Frame::captured`]).
    pub arrived: SystemTime,
    /// Monotonic arrival time (for ages and latency).
    pub arrived_at: Instant,
    /// The JPEG in the form clients send it; see [`Wire`].
    pub wire: Wire,
    /// A generated NO SIGNAL picture ([`crate::nosignal`]), not the camera's: its part says
    /// so in an `X-No-Signal: 1` header, for programs that read the stream.
    pub no_signal: bool,
}

impl Frame {
    /// The capture time in whole microseconds since the epoch: exactly what `X-Timestamp`
    /// says, so a time a client copies from a part header names this frame and no other.
    pub fn captured_micros(&self) -> u64 {
        let d = self.arrived.duration_since(UNIX_EPOCH).unwrap_or_default();
        d.as_secs() * 1_000_000 + u64::from(d.subsec_micros())
    }

    pub fn new(jpeg: &[u8]) -> Frame {
        let arrived = SystemTime::now();
        Frame {
            arrived,
            arrived_at: Instant::now(),
            wire: Wire::new(jpeg, arrived, ""),
            no_signal: false,
        }
    }

    /// A frame whose capture time the upstream gave (`X-Timestamp` of an upstream relay):
    /// that time on the wire and in the history, and arrival here for ages and latency.
    pub fn captured(jpeg: &[u8], captured: SystemTime) -> Frame {
        Frame {
            arrived: captured,
            arrived_at: Instant::now(),
            wire: Wire::new(jpeg, captured, ""),
            no_signal: false,
        }
    }

    /// A NO SIGNAL picture, marked as such on the wire.
    pub fn no_signal(jpeg: &[u8]) -> Frame {
        let arrived = SystemTime::now();
        Frame {
            arrived,
            arrived_at: Instant::now(),
            wire: Wire::new(jpeg, arrived, "X-No-Signal: 1\r\n"),
            no_signal: true,
        }
    }

    /// `jpeg` made from `source` (a smaller size of it, [`crate::tiers`]): the source's
    /// arrival times, so latency and ages still count from when the camera's frame came in,
    /// and its NO SIGNAL mark.
    pub fn derived(jpeg: &[u8], source: &Frame) -> Frame {
        let extra = if source.no_signal {
            "X-No-Signal: 1\r\n"
        } else {
            ""
        };
        Frame {
            arrived: source.arrived,
            arrived_at: source.arrived_at,
            wire: Wire::new(jpeg, source.arrived, extra),
            no_signal: source.no_signal,
        }
    }

    /// The JPEG, `FFD8` … `FFD9`.
    pub fn jpeg(&self) -> &[u8] {
        self.wire.jpeg()
    }
}
