//! The listening socket and the options every accepted socket inherits: the part of the HTTP
//! side that keeps the kernel's queues short (see the parent module for why each option).

use super::conn::Conn;
use super::HttpConfig;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

/// Unsent bytes the kernel may hold per client socket before a write blocks.
pub const NOTSENT_LOWAT: u32 = 16 * 1024;

/// Where HTTP is served: a TCP address, or a Unix socket for a reverse proxy on the same host.
#[derive(Debug)]
pub enum HttpListener {
    Tcp(TcpListener),
    /// The socket file's device and inode, so that only the socket we created is removed at
    /// exit (not a file someone put in its place meanwhile).
    Unix(UnixListener, PathBuf, (u64, u64)),
}

impl HttpListener {
    /// For the log: `127.0.0.1:8080` or `unix:/run/mjpeg-relay.sock`.
    pub fn describe(&self) -> String {
        match self {
            HttpListener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            HttpListener::Unix(_, p, _) => format!("unix:{}", p.display()),
        }
    }

    /// Whether clients from other hosts can reach it.
    pub fn is_public(&self) -> bool {
        match self {
            HttpListener::Tcp(l) => l.local_addr().is_ok_and(|a| !a.ip().is_loopback()),
            HttpListener::Unix(..) => false,
        }
    }
}

/// Binds the HTTP listener (`HOST:PORT` or `unix:PATH`) with the socket options described in
/// the module docs.
pub fn bind(addr: &str, cfg: &HttpConfig) -> io::Result<HttpListener> {
    if let Some(path) = addr.strip_prefix("unix:") {
        return bind_unix(path.into(), cfg.max_clients);
    }
    let listener = TcpListener::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => {
                "; is another relay (or another server) using that port? Choose another with \
                 --http HOST:PORT"
            }
            io::ErrorKind::PermissionDenied => {
                "; ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a higher one with \
                 --http HOST:PORT"
            }
            io::ErrorKind::AddrNotAvailable => {
                "; that address is not one of this host's: --http 0.0.0.0:PORT listens on all"
            }
            _ => "",
        };
        let e = crate::logger::describe_io(&e);
        io::Error::other(format!(
            "cannot listen for HTTP on {addr} (--http): {e}{hint}"
        ))
    })?;
    let fd = listener.as_raw_fd();
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    setsockopt_int(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        NOTSENT_LOWAT as i32,
    )?;
    setsockopt_timeout(fd, libc::SO_SNDTIMEO, cfg.send_timeout)?;
    widen_backlog(fd, cfg.max_clients)?;
    Ok(HttpListener::Tcp(listener))
}

/// std listens with a backlog of 128. When a page (or a wall of monitors) opens hundreds of
/// streams at once, the acceptor, which starts a thread per connection, falls behind that
/// queue, and the kernel drops connections (the benchmark saw 83 resets at 1000 clients).
/// Calling listen() again on a listening socket only changes its backlog; the kernel caps it
/// at net.core.somaxconn.
fn widen_backlog(fd: i32, max_clients: usize) -> io::Result<()> {
    let backlog = max_clients.clamp(128, 65_535) as i32;
    // SAFETY: listen on a socket descriptor we own.
    if unsafe { libc::listen(fd, backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A Unix socket for a reverse proxy. A socket file left by a relay that died is replaced; one
/// that a running relay still answers on is not, and anything that is not a socket (a regular
/// file, a directory, a link) is never touched: `--http unix:notes.txt` must not delete notes.
fn bind_unix(path: PathBuf, max_clients: usize) -> io::Result<HttpListener> {
    use std::os::unix::fs::FileTypeExt;
    let refuse = |kind: io::ErrorKind, why: String| {
        io::Error::new(
            kind,
            format!("cannot listen for HTTP on unix:{}: {why}", path.display()),
        )
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(refuse(
                    io::ErrorKind::AddrInUse,
                    "another process is serving there".into(),
                ));
            }
            // A socket nobody answers on: left by a relay that died.
            std::fs::remove_file(&path)?;
        }
        Ok(meta) => {
            let what = if meta.is_dir() {
                "a directory"
            } else if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a file"
            };
            return Err(refuse(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{what} is there, not a socket; it is left alone. Choose another path for \
                     --http unix:PATH (e.g. /run/mjpeg-relay/http.sock)"
                ),
            ));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(&path).map_err(|e| refuse(e.kind(), e.to_string()))?;
    widen_backlog(listener.as_raw_fd(), max_clients)?;
    let id = socket_id(&path).ok_or_else(|| refuse(io::ErrorKind::NotFound, "vanished".into()))?;
    Ok(HttpListener::Unix(listener, path, id))
}

/// Device and inode of the socket file at `path`, if a socket is there.
pub(super) fn socket_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type()
        .is_socket()
        .then(|| (meta.dev(), meta.ino()))
}

fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: fd is a valid socket owned by the caller; the option value is a plain c_int that
    // lives for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setsockopt_timeout(fd: i32, name: i32, d: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: as above; timeval is the documented type of SO_SNDTIMEO / SO_RCVTIMEO.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// take the system default (~200 KB): behind a proxy, seconds of old frames for a slow viewer
/// (measured through nginx: 87 to 92 frames behind at a tenth of the bitrate, 40 to 58 with
/// this).
pub const UNIX_SNDBUF: i32 = 8 * 1024;

pub(super) fn on_accept(conn: &Conn) {
    if let Conn::Unix(s) = conn {
        let _ = setsockopt_int(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            UNIX_SNDBUF,
        );
    }
}
