//! mjpeg-relay: take one live MJPEG stream per source, serve it to any number of HTTP clients,
//! always live.
//!
//! Data flows one way: a source ([`source`]) reads bytes, the sans-IO [`parser`] cuts them into
//! whole JPEG frames, the newest frame goes into a [`slot`] owned by its [`stream`], and each
//! HTTP client thread ([`http`]) takes the newest frame whenever its socket is ready for one. A
//! slow client skips frames instead of queueing them, and the kernel's socket buffer is kept
//! small too (`TCP_NOTSENT_LOWAT`), because a multi-megabyte send buffer is itself a queue of
//! old frames.

pub mod auth;
pub mod cli;
pub mod font;
pub mod http;
pub mod logger;
pub mod metrics;
pub mod multipart;
pub mod nosignal;
pub mod parser;
pub mod slot;
pub mod source;
pub mod static_files;
pub mod stream;
pub mod testjpeg;
