#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! HTTPS without a reverse proxy: `--tls-cert FILE --tls-key FILE` (PEM).
//!
//! `rustls` on the same blocking per-client threads as plain HTTP: no async runtime. The TLS
//! session wraps the client's TCP socket, so the socket options of the parent module
//! (`TCP_NOTSENT_LOWAT`, `SO_SNDTIMEO`) and the in-flight bound still act on the TCP queue
//! underneath: encrypted bytes queue there exactly as plain ones would. rustls's own buffer of
//! outgoing records is capped at [`TLS_BUFFER`], and [`TlsConn`] writes it out before taking
//! more, so a client that stops reading blocks its writes like a plain one.
//!
//! The handshake is part of the request head: it must finish within `--header-timeout`, so a
//! client that opens TLS and stalls is cut like a slowloris. Plain HTTP sent to the TLS port
//! gets a plain `400` saying to use `https://`, not a hang or a TLS alert a person cannot read.
//!
//! The certificate and key are read again when either file changes (checked at most once a
//! second, when a connection arrives): an ACME client's renewal takes effect for new
//! connections, and viewers already watching keep their session. A pair that fails to load
//! (a half-written renewal) is logged and the previous one kept.
//!
//! Crypto provider: *ring*, pure Rust plus assembly and C that `cc` builds with the system's
//! C compiler (on a fresh Debian machine and on Raspberry Pi OS alike: no cmake, no Go, unlike
//! aws-lc-rs, rustls's default).

use super::conn::{linger_close, Conn, Response};
use super::head::read_head;
use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Outgoing TLS records rustls may hold per connection beyond what the socket took: a frame's
/// worth; a client that reads nothing is stopped by the socket's own bounds first.
pub const TLS_BUFFER: usize = 64 * 1024;

/// How often the files are looked at for a change, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The server's certificate and key, reloaded when their files change.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    /// The configuration new connections get, and the files' modification times it was made
    /// from, and when they were last looked at.
    state: Mutex<State>,
}

struct State {
    config: Arc<ServerConfig>,
    /// The files as they were when `config` was made from them.
    loaded: (Stamp, Stamp),
    /// The files as they were when they last failed to load: logged once for that, and
    /// tried again at every check until they load, since a renewal caught half-written may
    /// be finished within the same timestamp tick (and then never look changed again).
    failed: Option<(Stamp, Stamp)>,
    checked: Instant,
}

/// A file's modification time and length; `None` while it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Tls {
    /// Loads the pair, or says why not (the relay then does not start).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        // Stamped before reading: a change while we read is seen as one at the next check.
        let loaded = (stamp(cert), stamp(key));
        let config = server_config(cert, key)?;
        Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(State {
                config,
                loaded,
                failed: None,
                checked: Instant::now(),
            }),
        })
    }

    /// The configuration for a new connection: the newest pair that loaded.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut st = self.state.lock();
        if st.checked.elapsed() >= CHECK_EVERY {
            st.checked = Instant::now();
            let now = (stamp(&self.cert), stamp(&self.key));
            if now != st.loaded {
                match server_config(&self.cert, &self.key) {
                    Ok(c) => {
                        st.config = c;
                        st.loaded = now;
                        st.failed = None;
                        log::info!(
                            "TLS: {} changed; new connections get the new certificate",
                            self.cert.display()
                        );
                    }
                    Err(e) => {
                        if st.failed != Some(now) {
                            log::warn!(
                                "TLS: {} or {} changed but does not load ({e}); keeping the \
                                 previous certificate, trying again every second",
                                self.cert.display(),
                                self.key.display()
                            );
                        }
                        st.failed = Some(now);
                    }
                }
            }
        }
        st.config.clone()
    }
}

/// A rustls server configuration from PEM files: the chain (leaf first) and its private key.
fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read --tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {} holds no certificate (PEM, -----BEGIN CERTIFICATE-----)",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "--tls-key {}: no private key read ({e}); PEM, PKCS#8, PKCS#1 or SEC1",
            key.display()
        )
    })?;
    let aes = cpu_has_aes();
    let mut provider = rustls::crypto::ring::default_provider();
    if !aes {
        // ChaCha20 first, in each TLS version; the rest as ring orders them.
        use rustls::CipherSuite as C;
        provider.cipher_suites.sort_by_key(|s| {
            !matches!(
                s.suite(),
                C::TLS13_CHACHA20_POLY1305_SHA256
                    | C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                    | C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            )
        });
    }
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert and --tls-key do not make a pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Without AES instructions our order (ChaCha20 first) wins over the client's: a
    // browser on a laptop prefers AES-GCM, which its own CPU does fast and ours does not.
    config.ignore_client_order = !aes;
    Ok(Arc::new(config))
}

/// Whether this CPU has AES instructions (and the carry-less multiply GCM needs).
///
/// A Raspberry Pi 4's Cortex-A72 has neither (a Pi 5's has both): there AES-GCM runs in
/// software, several times slower than ChaCha20-Poly1305, which needs only plain arithmetic.
/// So without them the relay prefers ChaCha20 over the client's order. The environment
/// variable `MJPEG_RELAY_CPU_AES` (`0` or `1`) overrides the detection, for tests and for a
/// CPU it gets wrong.
pub fn cpu_has_aes() -> bool {
    static AES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AES.get_or_init(|| {
        let aes = match std::env::var("MJPEG_RELAY_CPU_AES").as_deref() {
            Ok("0") => false,
            Ok("1") => true,
            _ => detect_aes(),
        };
        if !aes {
            log::info!(
                "TLS: this CPU has no AES instructions: ChaCha20-Poly1305 is preferred over the \
                 client's order"
            );
        }
        aes
    })
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn detect_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn detect_aes() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
}

/// 32-bit ARM (Raspberry Pi OS 32-bit, also on a 64-bit Pi): the kernel's feature list.
#[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
fn detect_aes() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .filter(|l| l.starts_with("Features"))
            .any(|l| l.split_whitespace().any(|f| f == "aes"))
    })
}

/// A TLS session over a client's TCP socket, as the rest of the HTTP layer uses a socket:
/// blocking reads and writes bounded by the socket's own timeouts.
///
/// Not rustls's `StreamOwned`: its `complete_io`, after a write that timed out, goes on to a
/// *read* (a server always wants to read), which on a streaming connection (the client sends
/// nothing after its request) blocks until the client closes, so a viewer that stopped
/// reading held its thread forever instead of being dropped at `--send-timeout`. Here a write
/// only writes, and a read only reads (and answers what TLS needs answered).
pub struct TlsConn {
    pub conn: rustls::ServerConnection,
    pub sock: std::net::TcpStream,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn").field("sock", &self.sock).finish()
    }
}

impl TlsConn {
    /// Writes out every pending TLS record; each socket write is bounded by `SO_SNDTIMEO`.
    fn flush_records(&mut self) -> std::io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock)? == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Sends `close_notify` (best effort).
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush_records();
    }
}

impl std::io::Write for TlsConn {
    /// Records from the last write go out first (so rustls holds at most [`TLS_BUFFER`]),
    /// then `buf` is encrypted into the session's buffer.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.flush_records()?;
        self.conn.writer().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_records()
    }
}

impl std::io::Read for TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::ErrorKind;
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext yet: take records from the socket (bounded by SO_RCVTIMEO).
            if self.conn.read_tls(&mut self.sock)? == 0 {
                return Ok(0);
            }
            self.conn
                .process_new_packets()
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
            self.flush_records()?;
        }
    }
}
/// Log lines of failed handshakes and plain HTTP on the TLS port: a scanner repeats them.
static TLS_LOG: crate::logger::Throttled = crate::logger::Throttled::new();

/// The TLS handshake of a new connection, by `deadline`; the session, or `None` when it is
/// over (logged, answered where a person may read it). Never inlined: its locals (a TLS
/// session is kilobytes) would otherwise deepen every connection thread's stack frame, TLS or
/// not, and with it the stack pages each streaming viewer touches (+4 KB RSS per viewer,
/// measured at 500 viewers).
#[inline(never)]
pub(super) fn accept(tcp: TcpStream, tls: &Tls, deadline: Instant, peer: &str) -> Option<Conn> {
    let left = || deadline.saturating_duration_since(Instant::now());
    // A TLS client speaks first with a handshake record (0x16). Anything else is most likely
    // plain HTTP, typed as http:// by a person: tell them, in HTTP.
    let mut first = [0u8; 1];
    let _ = tcp.set_read_timeout(Some(left().max(Duration::from_millis(1))));
    match tcp.peek(&mut first) {
        Ok(1) if first == [0x16] => {}
        Ok(1) => {
            answer_plain_http(tcp, left(), peer);
            return None;
        }
        _ => {
            log::debug!("{peer}: closed or silent before a TLS handshake");
            return None;
        }
    }
    let mut session = match rustls::ServerConnection::new(tls.config()) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("{peer}: cannot start a TLS session: {e}");
            return None;
        }
    };
    session.set_buffer_limit(Some(TLS_BUFFER));
    let mut tcp = tcp;
    while session.is_handshaking() {
        if left().is_zero() {
            log::debug!("{peer}: TLS handshake not complete in time (--header-timeout)");
            return None;
        }
        let _ = tcp.set_read_timeout(Some(left()));
        if let Err(e) = session.complete_io(&mut tcp) {
            TLS_LOG.note(|more| {
                log::info!(
                    "{peer}: TLS handshake failed: {e}{}",
                    crate::logger::more(more)
                )
            });
            return None;
        }
    }
    Some(Conn::Tls(Box::new(TlsConn {
        conn: session,
        sock: tcp,
    })))
}

/// Plain HTTP on the TLS port, most likely `http://` typed by a person: a `400` that says
/// to use `https://`, with the URL they asked for where it is safe to repeat.
fn answer_plain_http(tcp: TcpStream, left: Duration, peer: &str) {
    let mut conn = Conn::Tcp(tcp);
    let host = read_head(&mut conn, left)
        .ok()
        .and_then(|h| {
            h.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| (v.clone(), h.target))
        })
        .filter(|(host, _)| {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let url = match host {
        Some((host, target))
            if target.starts_with('/') && !target.contains(['<', '>', '"', ' ']) =>
        {
            format!("https://{host}{target}")
        }
        _ => "https://".to_string(),
    };
    TLS_LOG.note(|more| {
        log::info!(
            "{peer}: plain HTTP on the TLS port, answered 400 (use https://){}",
            crate::logger::more(more)
        )
    });
    let resp = Response::bytes(400, format!("This port serves HTTPS only. Use {url}\n"))
        .with_header("Content-Type", "text/plain; charset=utf-8");
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = resp.write_to(&mut conn, 1, false);
    linger_close(conn);
}
