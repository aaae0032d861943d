//! `scenario pi`: a Raspberry Pi's budget. The relay is confined to a Pi-class share of one
//! core (`--cpu-share`, default 0.3: a Pi 4's Cortex-A72 core does roughly a third of this
//! machine's per core, by single-thread benchmarks; an estimate, which is why it is a flag)
//! and 64 MB of memory (`--memory-mb`), then serves the load of a Pi with four cameras: 4
//! cameras (`--cameras`) at 640x480 15 fps, 10 full-size viewers each (`--viewers`), one viewer
//! of each at 320 px (its transcoder), and one dashboard carrying all four at tile size
//! through `/mux`. Every viewer must stay live: frame rate and lag per group, the relay's CPU
//! and peak memory, and whether anything was killed or failed to allocate.
//!
//! How it is confined, in order of preference, and the report says which it used: cgroup v2
//! (`cpu.max`, `memory.max`), cgroup v1 (`cpu.cfs_quota_us`, `memory.limit_in_bytes`), both
//! with the relay pinned to one CPU (`taskset`); without a writable cgroup, `taskset` alone
//! with `prlimit --data` for memory (a heap bound; an address-space bound would count every
//! thread's reserved stack and malloc arena, not what a Pi's RAM holds).

use crate::args::num;
use crate::client::{parse_url, spawn_client, ClientLog, Kind};
use crate::procfs::{clk_tck, sample};
use crate::run::pct;
use crate::servers::start_relay_args;
use crate::upstream::{run_upstream, FrameMaker, UpMode};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A cgroup made for the relay, removed on drop (after the relay has gone).
struct Confined {
    how: String,
    dirs: Vec<PathBuf>,
    /// Where the kernel counts OOM kills for this group, and the line that does.
    oom_file: Option<(PathBuf, &'static str)>,
}

impl Drop for Confined {
    fn drop(&mut self) {
        for d in &self.dirs {
            // The relay was killed before this; an emptied group can be removed.
            for _ in 0..20 {
                if std::fs::remove_dir(d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Confined {
    fn oom_kills(&self) -> Option<u64> {
        let (file, key) = self.oom_file.as_ref()?;
        let text = std::fs::read_to_string(file).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
    }
}

/// Confines `pid` (all its threads): a cgroup where one can be made, else resource limits.
fn confine(pid: u32, share: f64, memory: u64) -> Result<Confined, String> {
    let tag = format!("mjpeg-bench-pi-{}", std::process::id());
    let quota = (share * 100_000.0).round() as u64;
    let pinned = Command::new("taskset")
        .args(["-a", "-c", "-p", "0", &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    let pin = if pinned { ", pinned to CPU 0" } else { "" };
    let v2 = PathBuf::from("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if controllers.contains("cpu") && controllers.contains("memory") {
        let dir = v2.join(&tag);
        let made = std::fs::create_dir(&dir)
            .and_then(|()| std::fs::write(dir.join("cpu.max"), format!("{quota} 100000")))
            .and_then(|()| std::fs::write(dir.join("memory.max"), memory.to_string()))
            .and_then(|()| std::fs::write(dir.join("memory.swap.max"), "0").or(Ok(())))
            .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
        if made.is_ok() {
            return Ok(Confined {
                how: format!("cgroup v2 cpu.max {quota}/100000, memory.max {memory}{pin}"),
                oom_file: Some((dir.join("memory.events"), "oom_kill ")),
                dirs: vec![dir],
            });
        }
        let _ = std::fs::remove_dir(&dir);
    }
    let (cpu, mem) = (v2.join("cpu").join(&tag), v2.join("memory").join(&tag));
    let made = std::fs::create_dir(&cpu)
        .and_then(|()| std::fs::write(cpu.join("cpu.cfs_period_us"), "100000"))
        .and_then(|()| std::fs::write(cpu.join("cpu.cfs_quota_us"), quota.to_string()))
        .and_then(|()| std::fs::create_dir(&mem))
        .and_then(|()| std::fs::write(mem.join("memory.limit_in_bytes"), memory.to_string()))
        .and_then(|()| std::fs::write(cpu.join("cgroup.procs"), pid.to_string()))
        .and_then(|()| std::fs::write(mem.join("cgroup.procs"), pid.to_string()));
    if made.is_ok() {
        return Ok(Confined {
            how: format!(
                "cgroup v1 cpu.cfs_quota_us {quota}/100000, memory.limit_in_bytes {memory}{pin}"
            ),
            oom_file: Some((mem.join("memory.oom_control"), "oom_kill ")),
            dirs: vec![cpu, mem],
        });
    }
    let _ = std::fs::remove_dir(&cpu);
    let _ = std::fs::remove_dir(&mem);
    let limited = Command::new("prlimit")
        .args([&format!("--pid={pid}"), &format!("--data={memory}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pinned || !limited {
        return Err("no cgroup could be made, and taskset/prlimit failed: run as root".into());
    }
    Ok(Confined {
        how: format!(
            "taskset to CPU 0 and prlimit --data={memory} (no writable cgroup: the CPU share is \
             not enforced, only one core)"
        ),
        dirs: Vec::new(),
        oom_file: None,
    })
}

/// Peak resident memory of `pid` so far (`VmHWM`), in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    let a = cx.args;
    let cameras: usize = num(a, "--cameras", 4)?;
    let viewers: usize = num(a, "--viewers", 10)?;
    let fps: f64 = num(a, "--fps", 15.0)?;
    let bytes: usize = num(a, "--frame-bytes", 0)?;
    let share: f64 = num(a, "--cpu-share", 0.3)?;
    let memory_mb: u64 = num(a, "--memory-mb", 64)?;
    let duration = cx.duration(20.0)?;
    let names: Vec<String> = (0..cameras).map(|i| format!("cam{i}")).collect();
    let mut args = Vec::new();
    for n in &names {
        args.push("--stream".to_string());
        args.push(format!("{n}=tcp-listen:127.0.0.1:0"));
    }
    let frame_kb = FrameMaker::new(640, 480, bytes).make(0).len() as f64 / 1000.0;
    let srv = start_relay_args(&cx.relay_bin, &[], &args, true);
    let pid = srv.child.id();
    let confined = confine(pid, share, memory_mb << 20)?;
    let http = srv.http.clone();
    let warmup = Duration::from_secs(2);
    let t0 = Instant::now();
    let until = t0 + warmup + Duration::from_secs_f64(duration);
    let mut upstreams = Vec::new();
    for n in &names {
        let up = srv
            .upstreams
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, addr)| addr.clone())
            .ok_or_else(|| format!("no upstream address for {n}"))?;
        let maker = FrameMaker::new(640, 480, bytes);
        let sent = Arc::new(AtomicU64::new(0));
        let stop = until + Duration::from_millis(500);
        upstreams.push(std::thread::spawn(move || {
            run_upstream(UpMode::Push(up), maker, fps, stop, sent)
        }));
    }
    // The viewers start after the warm-up, so their figures are of a running relay.
    std::thread::sleep(warmup);
    let t1 = Instant::now();
    let mut full = Vec::new();
    let mut sized = Vec::new();
    for n in &names {
        let url = Arc::new(parse_url(&format!("http://{http}/{n}/stream"))?);
        for _ in 0..viewers {
            full.push(spawn_client(Kind::Fast, url.clone(), 0.0, 0.0, until, t1));
        }
        let url = Arc::new(parse_url(&format!("http://{http}/{n}/stream?width=320"))?);
        sized.push(spawn_client(Kind::Fast, url, 0.0, 0.0, until, t1));
    }
    let parts = Arc::new(AtomicU64::new(0));
    let dashboard = {
        let (http, parts) = (http.clone(), parts.clone());
        let url = format!("/mux?streams={}&width=320", names.join(","));
        std::thread::spawn(move || super::mux::read_mux(&http, &url, until, &parts))
    };
    // CPU over the middle of the run, with every viewer connected.
    std::thread::sleep(Duration::from_secs(1));
    let (s0, p0, m0) = (sample(pid), parts.load(SeqCst), Instant::now());
    std::thread::sleep(
        until.saturating_duration_since(Instant::now()) - Duration::from_millis(500),
    );
    let (s1, p1, secs) = (sample(pid), parts.load(SeqCst), m0.elapsed().as_secs_f64());
    let peak = peak_rss_kb(pid);
    let full: Vec<ClientLog> = full
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    let sized: Vec<ClientLog> = sized
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    let _ = dashboard.join();
    for u in upstreams {
        let _ = u.join();
    }
    let mut srv = srv;
    let alive = srv.child.try_wait().map(|s| s.is_none()).unwrap_or(false);
    let oom = confined.oom_kills();
    drop(srv);
    let cpu = match (s0, s1) {
        (Some(s0), Some(s1)) => (s1.cpu_ticks - s0.cpu_ticks) as f64 / clk_tck() / secs,
        _ => f64::NAN,
    };
    let group = |logs: &[ClientLog], what: &str| {
        let n = logs.len().max(1) as f64;
        let rates: Vec<f64> = logs
            .iter()
            .map(|l| l.frames.len() as f64 / duration)
            .collect();
        let min = rates.iter().cloned().fold(f64::MAX, f64::min);
        let mut lat: Vec<u32> = logs
            .iter()
            .flat_map(|l| l.frames.iter().map(|f| f.1))
            .collect();
        lat.sort_unstable();
        let errors: u64 = logs
            .iter()
            .map(|l| l.dup_or_reorder + l.invalid + l.failed)
            .sum();
        format!(
            "| {}{} | {what} | {:.1} (min {:.1}) | {:.1} / {:.1} | {errors} |",
            cx.name,
            cx.build,
            rates.iter().sum::<f64>() / n,
            min,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        )
    };
    println!("| run | viewers | frames/s per viewer | lag p50 / p99 ms | errors |");
    println!("|---|---|---|---|---|");
    println!("{}", group(&full, &format!("{} full size", full.len())));
    println!("{}", group(&sized, &format!("{} at 320 px", sized.len())));
    println!(
        "| {}{} | 1 dashboard (/mux, {cameras} tiles) | {:.1} parts/s | - | - |",
        cx.name,
        cx.build,
        (p1 - p0) as f64 / secs
    );
    println!(
        "{}{}: {cameras} cameras x {fps} fps of {frame_kb:.1} KB; {}; relay CPU {:.1}% of a \
         core ({:.0}% of its share), peak RSS {:.1} MB, OOM kills {}, alive at the end: {alive}",
        cx.name,
        cx.build,
        confined.how,
        cpu * 100.0,
        cpu / share * 100.0,
        peak as f64 / 1024.0,
        oom.map_or("not counted".to_string(), |n| n.to_string()),
    );
    Ok(())
}
