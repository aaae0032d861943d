//! `scenario mux`: a wall of cameras on `/mux`. 16 cameras (`--cameras`) pushed at 15 fps
//! (`--fps`) of 5 KB (`--frame-bytes`), 20 dashboards (`--clients-n`), in two shapes: every
//! dashboard carries all cameras, then each carries a quarter of them. Prints, per shape, the
//! relay's CPU and its context switches per second (each a thread put to sleep or woken: the
//! wake-ups a frame of one camera causes in viewers that do not carry it show up here), and
//! the parts the dashboards received per second.

use crate::args::num;
use crate::procfs::{clk_tck, context_switches, sample};
use crate::servers::start_relay_args;
use crate::upstream::{run_upstream, FrameMaker, UpMode};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    let a = cx.args;
    let cameras: usize = num(a, "--cameras", 16)?;
    let fps: f64 = num(a, "--fps", 15.0)?;
    let bytes: usize = num(a, "--frame-bytes", 5_000)?;
    let dashboards: usize = num(a, "--clients-n", 20)?;
    let duration = cx.duration(10.0)?;
    let names: Vec<String> = (0..cameras).map(|i| format!("cam{i:02}")).collect();
    let mut args = Vec::new();
    for n in &names {
        args.push("--stream".to_string());
        args.push(format!("{n}=tcp-listen:127.0.0.1:0"));
    }
    let srv = start_relay_args(&cx.relay_bin, &[], &args, true);
    // The addresses the sources took, in the cameras' order (port 0: no race for a free port).
    let ups: Vec<String> = names
        .iter()
        .map(|n| {
            srv.upstreams
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, a)| a.clone())
                .ok_or_else(|| format!("no upstream address for {n}"))
        })
        .collect::<Result<_, _>>()?;
    let pid = srv.child.id();
    let quarter = cameras.div_ceil(4).max(1);
    // Per shape, the cameras each dashboard carries.
    let all = names.join(",");
    let part = |d: usize| -> String {
        let q: Vec<&str> = names
            .iter()
            .skip((d % 4) * quarter)
            .take(quarter)
            .map(|s| s.as_str())
            .collect();
        q.join(",")
    };
    let shapes: [(&str, Vec<String>); 2] = [
        ("all cameras each", vec![all; dashboards]),
        ("a quarter each", (0..dashboards).map(part).collect()),
    ];
    // The upstreams run for both shapes and the warm-up between.
    let until = Instant::now() + Duration::from_secs_f64(2.0 * duration + 4.0);
    let upstreams: Vec<_> = ups
        .iter()
        .map(|up| {
            let (mode, maker) = (UpMode::Push(up.clone()), FrameMaker::new(320, 240, bytes));
            let sent = Arc::new(AtomicU64::new(0));
            std::thread::spawn(move || run_upstream(mode, maker, fps, until, sent))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    for (shape, carried) in &shapes {
        let parts = Arc::new(AtomicU64::new(0));
        let stop = Instant::now() + Duration::from_secs_f64(duration + 1.0);
        let readers: Vec<_> = carried
            .iter()
            .map(|list| {
                let url = format!("/mux?streams={list}");
                let (http, parts) = (srv.http.clone(), parts.clone());
                std::thread::spawn(move || read_mux(&http, &url, stop, &parts))
            })
            .collect();
        // Measure the middle: after every dashboard is connected, before any leaves.
        std::thread::sleep(Duration::from_millis(700));
        let (p0, c0, s0) = (parts.load(SeqCst), context_switches(pid), sample(pid));
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(duration - 0.5));
        let secs = t0.elapsed().as_secs_f64();
        let (p1, c1, s1) = (parts.load(SeqCst), context_switches(pid), sample(pid));
        for r in readers {
            let _ = r.join();
        }
        let cpu = match (s0, s1) {
            (Some(s0), Some(s1)) => (s1.cpu_ticks - s0.cpu_ticks) as f64 / clk_tck() / secs,
            _ => f64::NAN,
        };
        eprintln!(
            "mux {cameras} cameras x {fps} fps, {dashboards} dashboards, {shape}{}: relay CPU \
             {:.1}% of a core, {:.0} context switches/s, {:.0} parts/s received",
            cx.build,
            cpu * 100.0,
            (c1 - c0) as f64 / secs,
            (p1 - p0) as f64 / secs,
        );
    }
    drop(srv);
    for u in upstreams {
        let _ = u.join();
    }
    Ok(())
}

/// A dashboard: reads `url` until `stop`, counting parts (`X-Stream:` lines).
pub(crate) fn read_mux(http: &str, url: &str, stop: Instant, parts: &AtomicU64) {
    let Ok(mut s) = TcpStream::connect(http) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let req = format!("GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return;
    }
    const MARK: &[u8] = b"X-Stream: ";
    // What may hold the start of a mark split across two reads.
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < stop {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(_) => continue,
        };
        carry.extend_from_slice(&buf[..n]);
        let found = carry.windows(MARK.len()).filter(|w| *w == MARK).count();
        parts.fetch_add(found as u64, SeqCst);
        let keep = carry.len().min(MARK.len() - 1);
        carry.drain(..carry.len() - keep);
    }
}
