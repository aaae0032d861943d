//! mjpeg-relay: take one live MJPEG stream per source, serve it to any number of HTTP clients,
//! always live.
//!
//! Data flows one way, **source → parser → feed/slot → HTTP viewer → client**, and the imports
//! form no circle: `parser`, `jpeg`, `slot` and `multipart` use nothing of the crate but each
//! other's basics; the feed uses only `slot`, `frame` and `jpeg`, the hub only the feed; sources
//! fill a feed and never see the hub or the HTTP side, which reads the hub and never a source;
//! the features (NO SIGNAL, metrics, auth, static files) use the core, and the core none of
//! them.
//!
//! | module | job |
//! |---|---|
//! | [`source`] | where bytes come from: one file per kind, each owning its threads and I/O; the spec parser, redaction and the pump beside them |
//! | [`parser`] | sans-IO multipart framing: bytes in, whole JPEG frames out |
//! | [`jpeg`] | the JPEG marker walk (where an image ends), header segments, comments |
//! | [`feed`] | what a source fills: its [`slot`], state and counters; subscriptions for waiters that carry several feeds |
//! | [`slot`] | the newest frame, a generation counter and a timed wait; nothing else |
//! | [`hub`] | one served stream: the feed its viewers read, its fallback chain, its clients, demand |
//! | [`failover`] | `--fallback`: standby and the forwarder from the first member that is up |
//! | [`frame`] | a frame as clients get it, its wire form laid out once ([`multipart`]) |
//! | [`history`] | the last seconds of a stream: the same shared frames, in a ring bounded in bytes and age |
//! | [`scale`], [`scaled_decode`], [`planar_encode`], [`tiers`] | a frame at 1/2, 1/4 or 1/8 of its size (sans-IO; decoded straight at that size, encoded from its planes); one transcoder per size in use, one decode per camera frame for all of them |
//! | [`http`] | the connection layer, access, routes, the one viewer loop, the in-flight bound, pages |
//! | [`shutdown`] | the one stop token every long-running thread holds |
//! | [`nosignal`], [`metrics`], [`static_files`] | features on top of the hub |
//! | [`policy`] | who a request is and what it may see: [`auth`] (`--auth`, `--token`), [`users`] (`[[user]]`), [`signing`] (signed links, sans-IO); [`login_limit`] slows guessing (sans-IO) |
//! | [`config_file`] | `--config FILE`: TOML to flags, users and keys |
//! | [`avi`] | sans-IO: the bytes around the frames of an MJPEG AVI file (`/clip`) |
//! | [`cli`], [`logger`], [`font`], [`testjpeg`] | flags, the log, a pixel font, test frames |
//!
//! The parser, the way a source drives it (bytes in any chunking, frames out the moment their
//! last byte is in):
//!
//! ```
//! use mjpeg_relay::parser::{Event, Parser};
//! use mjpeg_relay::testjpeg::jpeg_with_seq;
//!
//! let jpeg = jpeg_with_seq(7, 100);
//! let mut stream = b"--spionisto\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
//! stream.extend_from_slice(&jpeg);
//! let mut parser = Parser::new(1 << 20);
//! let mut frames = Vec::new();
//! for chunk in stream.chunks(10) {
//!     parser.push(chunk, &mut |event| {
//!         if let Event::Frame(f) = event {
//!             frames.push(f);
//!         }
//!     });
//! }
//! assert_eq!(frames, [jpeg]);
//! ```
//!
//! A slow client skips frames instead of queueing them, and the kernel's queues are kept small
//! too: `TCP_NOTSENT_LOWAT` for unsent bytes, the in-flight bound ([`http::inflight`]) for
//! bytes on the wire, because a megabyte of old frames in any queue is a picture from the past.

pub mod auth;
pub mod avi;
pub mod cli;
pub mod config_file;
pub mod failover;
pub mod feed;
pub mod font;
pub mod frame;
pub mod history;
pub mod http;
pub mod hub;
pub mod jpeg;
pub mod logger;
pub mod login_limit;
pub mod metrics;
pub mod multipart;
pub mod nosignal;
pub mod parser;
pub mod planar_encode;
pub mod policy;
pub mod scale;
pub mod scaled_decode;
pub mod shutdown;
pub mod signing;
pub mod slot;
pub mod source;
pub mod static_files;
pub mod testjpeg;
pub mod tiers;
pub mod users;
