//! Servers under test: mjpeg-relay (any build), and the ones this tool contains (the naive
//! forwarder, the 160-line toy, the raw-ceiling sender).
use crate::args::{flag, num, Args};
use crate::upstream::FrameMaker;
use mjpeg_relay::parser::{Event, Parser};
use mjpeg_testkit::{free_port, gst_part};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// A server process on ephemeral ports; killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) http: String,
    pub(crate) upstream: Option<String>,
    /// Every `tcp-listen` source of a relay: stream name and the address it took.
    pub(crate) upstreams: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_relay(bin: &str) -> Server {
    start_relay_env(bin, &[])
}

pub(crate) fn start_relay_env(bin: &str, env: &[(&str, &str)]) -> Server {
    start_relay_with(bin, env, "tcp-listen:127.0.0.1:0")
}

/// The relay with `source`; a `tcp-listen:` one is where the benchmark's upstream pushes.
pub(crate) fn start_relay_with(bin: &str, env: &[(&str, &str)], source: &str) -> Server {
    let args = ["--source", source].map(String::from);
    start_relay_args(bin, env, &args, source.starts_with("tcp-listen:"))
}

/// The relay with `args` (its sources) on a free HTTP port; waits for its "serving" line, and
/// with `wants_up` for the address its `tcp-listen:` source took.
pub(crate) fn start_relay_args(
    bin: &str,
    env: &[(&str, &str)],
    args: &[String],
    wants_up: bool,
) -> Server {
    let mut child = Command::new(bin)
        .envs(env.iter().copied())
        .args(args)
        .args(["--http", "127.0.0.1:0", "--max-clients", "5000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e} (build it with cargo build --release)"));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var_os("BENCH_LOG").is_some() {
                eprintln!("relay: {line}");
            }
            let _ = tx.send(line);
        }
    });
    let (mut http, mut ups) = (None, Vec::new());
    let mut seen = Vec::new();
    while http.is_none() || (wants_up && ups.is_empty()) {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("relay start-up line: {e}; it said: {seen:?}"));
        if let Some(r) = line.split("serving http://").nth(1) {
            http = r.split('/').next().map(String::from);
        }
        // `stream 'NAME': waiting for the upstream on tcp ADDR`, one per tcp-listen source.
        if let Some(r) = line.split("waiting for the upstream on tcp ").nth(1) {
            let name = line.split('\'').nth(1).unwrap_or_default().to_string();
            ups.push((name, r.trim().to_string()));
        }
        seen.push(line);
    }
    Server {
        child,
        http: http.unwrap(),
        upstream: ups.first().map(|u| u.1.clone()),
        upstreams: ups,
    }
}

pub(crate) fn start_self(args: &[&str], http: String, upstream: Option<String>) -> Server {
    let me = std::env::current_exe().expect("own path");
    let mut child = Command::new(me)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start helper server");
    // It prints "ready" once bound; a probe connection would itself become a client.
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    assert_eq!(line.trim(), "ready", "helper server did not start");
    Server {
        child,
        http,
        upstream,
        upstreams: Vec::new(),
    }
}

/// One of this tool's own helper servers (`naive-server`, `toy-server`) on free ports.
pub(crate) fn start_helper(command: &str) -> Server {
    let (h, u) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    start_self(
        &[command, "--http", &h, "--upstream", &u],
        h.clone(),
        Some(u.clone()),
    )
}

pub(crate) fn start_naive() -> Server {
    start_helper("naive-server")
}

/// Every connected naive client's unbounded queue; the unboundedness is the point being measured.
type NaiveClients = Arc<Mutex<Vec<mpsc::Sender<Arc<[u8]>>>>>;

/// The naive forwarder: every upstream chunk goes to every client through an unbounded queue.
/// This is the design that drifts; it exists here only to be measured side by side.
pub(crate) fn naive_server(a: &Args) -> Result<(), String> {
    let http = flag(a, "--http").ok_or("--http")?;
    let upstream = flag(a, "--upstream").ok_or("--upstream")?;
    let clients: NaiveClients = Arc::default();
    let up = TcpListener::bind(upstream).map_err(|e| e.to_string())?;
    let c2 = clients.clone();
    std::thread::spawn(move || {
        for conn in up.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk: Arc<[u8]> = Arc::from(&buf[..n]);
                c2.lock()
                    .unwrap()
                    .retain(|tx| tx.send(chunk.clone()).is_ok());
            }
        }
    });
    let l = TcpListener::bind(http).map_err(|e| e.to_string())?;
    println!("ready");
    for conn in l.incoming() {
        let Ok(mut conn) = conn else { continue };
        let (tx, rx) = mpsc::channel::<Arc<[u8]>>();
        clients.lock().unwrap().push(tx);
        std::thread::spawn(move || {
            if !answer(&mut conn) {
                return;
            }
            for chunk in rx {
                if conn.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

pub(crate) fn start_toy() -> Server {
    start_helper("toy-server")
}

/// The newest frame and its generation, for the toy server.
type ToySlot = Arc<(Mutex<(u64, Arc<[u8]>)>, std::sync::Condvar)>;

/// The toy: only the core trick, as a first good relay would write it. The upstream is split
/// into whole frames (with the relay's parser, so both split alike), the newest is kept as a
/// ready multipart part, and each client thread waits for a newer one and writes it with one
/// `write_all`; `TCP_NOTSENT_LOWAT` 16 KiB on the listener. No limits, no deadlines, no
/// counters, no registry, no in-flight bound: the baseline for the relay's cost per viewer.
pub(crate) fn toy_server(a: &Args) -> Result<(), String> {
    let http = flag(a, "--http").ok_or("--http")?;
    let upstream = flag(a, "--upstream").ok_or("--upstream")?;
    let slot: ToySlot = Arc::new((
        Mutex::new((0, Arc::from(Vec::new().into_boxed_slice()))),
        std::sync::Condvar::new(),
    ));
    let up = TcpListener::bind(upstream).map_err(|e| e.to_string())?;
    let s2 = slot.clone();
    std::thread::spawn(move || {
        for conn in up.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut parser = Parser::new(8 << 20);
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                parser.push(&buf[..n], &mut |e| {
                    if let Event::Frame(jpeg) = e {
                        let part: Arc<[u8]> = Arc::from(gst_part(&jpeg).into_boxed_slice());
                        let (lock, cond) = &*s2;
                        let mut g = lock.lock().unwrap();
                        *g = (g.0 + 1, part);
                        cond.notify_all();
                    }
                });
            }
        }
    });
    let l = TcpListener::bind(http).map_err(|e| e.to_string())?;
    let lowat: libc::c_int = 16 * 1024;
    // SAFETY: setsockopt and listen on the listener we own, with a plain c_int. The backlog
    // as the relay sizes it (std's 128 makes a thousand viewers fail to connect, which would
    // flatter the toy's figures with fewer clients).
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&lowat as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        libc::listen(l.as_raw_fd(), 4096);
    }
    println!("ready");
    for conn in l.incoming() {
        let Ok(mut conn) = conn else { continue };
        let slot = slot.clone();
        std::thread::spawn(move || {
            if !answer(&mut conn) {
                return;
            }
            let mut seen = 0;
            loop {
                let part = {
                    let (lock, cond) = &*slot;
                    let mut g = lock.lock().unwrap();
                    while g.0 == seen {
                        g = cond.wait(g).unwrap();
                    }
                    seen = g.0;
                    g.1.clone()
                };
                if conn.write_all(&part).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

/// The helper servers' whole HTTP: read (and ignore) the request, send a multipart head.
pub(crate) fn answer(conn: &mut TcpStream) -> bool {
    let mut req = [0u8; 4096];
    let _ = conn.read(&mut req);
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=spionisto\r\n\r\n";
    conn.write_all(head.as_bytes()).is_ok()
}

/// The ceiling: one prepared multipart part written to each client as fast as it takes it,
/// a thread per client, no parsing and no HTTP handling beyond one fixed response head.
pub(crate) fn raw_server(a: &Args) -> Result<(), String> {
    let http = flag(a, "--http").ok_or("--http")?;
    let size: usize = num(a, "--frame-bytes", 50_000)?;
    let maker = FrameMaker::new(640, 480, size);
    let part: Arc<[u8]> = Arc::from(gst_part(&maker.make(1)).into_boxed_slice());
    let l = TcpListener::bind(http).map_err(|e| e.to_string())?;
    println!("ready");
    for conn in l.incoming() {
        let Ok(mut conn) = conn else { continue };
        let part = part.clone();
        std::thread::spawn(move || {
            if answer(&mut conn) {
                while conn.write_all(&part).is_ok() {}
            }
        });
    }
    Ok(())
}
