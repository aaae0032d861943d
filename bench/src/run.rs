//! One run: an upstream, clients of each kind, /proc samples, and its report.
use crate::args::{flag, num, Args};
use crate::client::{parse_url, spawn_client, ClientLog, Kind};
use crate::procfs::{clk_tck, sample, ProcSample};
use crate::upstream::{run_upstream, FrameMaker, UpMode};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub(crate) struct LoadCfg {
    pub(crate) url: String,
    pub(crate) up: Option<UpMode>,
    pub(crate) fps: f64,
    pub(crate) w: u16,
    pub(crate) h: u16,
    pub(crate) frame_bytes: usize,
    pub(crate) fast: usize,
    pub(crate) slow: usize,
    pub(crate) stalled: usize,
    pub(crate) churn: f64,
    pub(crate) slow_rate: f64,
    pub(crate) duration: f64,
    pub(crate) pid: Option<u32>,
    pub(crate) label: String,
}

pub(crate) fn parse_load(a: &Args) -> Result<LoadCfg, String> {
    let (w, h) = flag(a, "--size")
        .unwrap_or("640x480")
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .ok_or("--size: WxH")?;
    let up = if let Some(x) = flag(a, "--push") {
        Some(UpMode::Push(x.into()))
    } else if let Some(x) = flag(a, "--listen") {
        Some(UpMode::Listen(x.into()))
    } else {
        flag(a, "--serve-http").map(|x| UpMode::ServeHttp(x.into()))
    };
    Ok(LoadCfg {
        url: flag(a, "--url").ok_or("--url is required")?.into(),
        up,
        fps: num(a, "--fps", 30.0)?,
        w,
        h,
        frame_bytes: num(a, "--frame-bytes", 20_000)?,
        fast: num(a, "--fast", 1)?,
        slow: num(a, "--slow", 0)?,
        stalled: num(a, "--stalled", 0)?,
        churn: num(a, "--churn", 0.0)?,
        slow_rate: num(a, "--slow-rate", 51_200.0)?,
        duration: num(a, "--duration", 10.0)?,
        pid: flag(a, "--pid")
            .map(|p| p.parse())
            .transpose()
            .map_err(|_| "--pid")?,
        label: flag(a, "--label").unwrap_or("load").into(),
    })
}

pub(crate) struct Report {
    pub(crate) duration: f64,
    pub(crate) fps: f64,
    pub(crate) kinds: Vec<(Kind, Vec<ClientLog>)>,
    pub(crate) proc_start: Option<ProcSample>,
    pub(crate) proc_end: Option<ProcSample>,
    pub(crate) proc_max_rss: u64,
    pub(crate) proc_max_threads: u64,
    /// Samples after the clients have gone (churn): (seconds after the end, sample).
    pub(crate) proc_after: Option<ProcSample>,
}

pub(crate) fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

pub(crate) fn table_header() -> String {
    "| run | clients | frames/s per client | latency p50 / p99 / max (ms) | last fifth p50 / p99 (ms) | skipped | errors | delivered MB/s | server CPU | server RSS | threads |\n\
     |---|---|---|---|---|---|---|---|---|---|---|"
        .to_string()
}

impl Report {
    pub(crate) fn server_cols(&self) -> (String, String, String) {
        match (self.proc_start, self.proc_end) {
            (Some(a), Some(b)) => {
                let cpu = (b.cpu_ticks - a.cpu_ticks) as f64 / clk_tck() / self.duration * 100.0;
                (
                    format!("{cpu:.1}%"),
                    format!(
                        "{:.1} MB (max {:.1})",
                        b.rss_kb as f64 / 1024.0,
                        self.proc_max_rss as f64 / 1024.0
                    ),
                    format!("{} (max {})", b.threads, self.proc_max_threads),
                )
            }
            _ => ("-".into(), "-".into(), "-".into()),
        }
    }

    pub(crate) fn delivered_bytes(&self) -> u64 {
        self.kinds
            .iter()
            .flat_map(|(_, l)| l.iter())
            .map(|l| l.bytes)
            .sum()
    }

    pub(crate) fn delivered_frames(&self) -> u64 {
        self.kinds
            .iter()
            .flat_map(|(_, l)| l.iter())
            .map(|l| l.frames.len() as u64)
            .sum()
    }

    pub(crate) fn server_cpu_secs(&self) -> Option<f64> {
        Some((self.proc_end?.cpu_ticks - self.proc_start?.cpu_ticks) as f64 / clk_tck())
    }

    /// One row with throughput only, for the raw ceiling: it repeats one prepared frame, so
    /// latency, gaps and duplicates mean nothing there.
    pub(crate) fn throughput_row(&self, label: &str) -> String {
        let (cpu, rss, threads) = self.server_cols();
        let logs: Vec<_> = self.kinds.iter().flat_map(|(_, l)| l.iter()).collect();
        let frames: usize = logs.iter().map(|l| l.frames.len()).sum();
        let fps = frames as f64 / logs.len().max(1) as f64 / self.duration;
        format!(
            "| {label} | {} fast | {fps:.1} | - (one frame repeated) | - | - | - | {:.2} | {cpu} | {rss} | {threads} |\n",
            logs.len(),
            self.delivered_bytes() as f64 / self.duration / 1e6
        )
    }

    pub(crate) fn rows(&self, label: &str) -> String {
        let (cpu, rss, threads) = self.server_cols();
        let mut out = String::new();
        for (kind, logs) in &self.kinds {
            if logs.is_empty() {
                continue;
            }
            let n = logs.len();
            let mut lat: Vec<u32> = logs
                .iter()
                .flat_map(|l| l.frames.iter().map(|f| f.1))
                .collect();
            lat.sort_unstable();
            let cut = (self.duration * 0.8) as f32;
            let mut tail: Vec<u32> = logs
                .iter()
                .flat_map(|l| l.frames.iter().filter(|f| f.0 >= cut).map(|f| f.1))
                .collect();
            tail.sort_unstable();
            let frames: usize = logs.iter().map(|l| l.frames.len()).sum();
            let gaps: u64 = logs.iter().map(|l| l.gaps).sum();
            let errors: u64 = logs
                .iter()
                .map(|l| l.dup_or_reorder + l.invalid + l.failed)
                .sum();
            let bytes: u64 = logs.iter().map(|l| l.bytes).sum();
            let fps = frames as f64 / n as f64 / self.duration;
            let skipped = if frames as u64 + gaps > 0 {
                gaps as f64 / (frames as u64 + gaps) as f64 * 100.0
            } else {
                0.0
            };
            let (lat_s, tail_s, fps_s, skip_s) = if *kind == Kind::Stalled {
                (
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                )
            } else {
                (
                    format!(
                        "{:.1} / {:.1} / {:.1}",
                        pct(&lat, 0.5),
                        pct(&lat, 0.99),
                        pct(&lat, 1.0)
                    ),
                    format!("{:.1} / {:.1}", pct(&tail, 0.5), pct(&tail, 0.99)),
                    format!("{fps:.1}"),
                    format!("{skipped:.1}%"),
                )
            };
            if errors > 0 {
                eprintln!(
                    "{label} {}: errors: {} duplicate/reordered, {} invalid, {} failed connections",
                    kind.name(),
                    logs.iter().map(|l| l.dup_or_reorder).sum::<u64>(),
                    logs.iter().map(|l| l.invalid).sum::<u64>(),
                    logs.iter().map(|l| l.failed).sum::<u64>()
                );
            }
            let connects: u64 = logs.iter().map(|l| l.connects).sum();
            let who = if *kind == Kind::Churn {
                format!("{n} {} ({connects} connects)", kind.name())
            } else {
                format!("{n} {}", kind.name())
            };
            out += &format!(
                "| {label} | {who} | {fps_s} | {lat_s} | {tail_s} | {skip_s} | {errors} | {:.2} | {cpu} | {rss} | {threads} |\n",
                bytes as f64 / self.duration / 1e6
            );
        }
        out
    }
}

pub(crate) fn run_load(cfg: &LoadCfg, after_wait: Option<Duration>) -> Report {
    let url = Arc::new(parse_url(&cfg.url).unwrap_or_else(|e| panic!("{e}")));
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs_f64(cfg.duration);
    let sent = Arc::new(AtomicU64::new(0));
    let proc_start = cfg.pid.and_then(sample);
    let upstream = cfg.up.clone().map(|mode| {
        let maker = FrameMaker::new(cfg.w, cfg.h, cfg.frame_bytes);
        let (fps, sent) = (cfg.fps, sent.clone());
        // The upstream runs a little longer than the clients so the last fifth is not a tail-off.
        let up_until = until + Duration::from_millis(500);
        std::thread::spawn(move || run_upstream(mode, maker, fps, up_until, sent))
    });
    let mut handles: Vec<(Kind, JoinHandle<ClientLog>)> = Vec::new();
    let add = |kind: Kind, count: usize, handles: &mut Vec<(Kind, JoinHandle<ClientLog>)>| {
        for _ in 0..count {
            let h = spawn_client(kind, url.clone(), cfg.slow_rate, 0.0, until, t0);
            handles.push((kind, h));
        }
    };
    add(Kind::Fast, cfg.fast, &mut handles);
    add(Kind::Slow, cfg.slow, &mut handles);
    add(Kind::Stalled, cfg.stalled, &mut handles);
    if cfg.churn > 0.0 {
        // Ten churning threads share the connect rate.
        for _ in 0..10 {
            let h = spawn_client(Kind::Churn, url.clone(), 0.0, cfg.churn / 10.0, until, t0);
            handles.push((Kind::Churn, h));
        }
    }
    let mut max_rss = 0;
    let mut max_threads = 0;
    while Instant::now() < until {
        if let Some(s) = cfg.pid.and_then(sample) {
            max_rss = max_rss.max(s.rss_kb);
            max_threads = max_threads.max(s.threads);
        }
        std::thread::sleep(
            Duration::from_millis(500).min(until.saturating_duration_since(Instant::now())),
        );
    }
    let proc_end = cfg.pid.and_then(sample);
    let mut kinds: Vec<(Kind, Vec<ClientLog>)> =
        [Kind::Fast, Kind::Slow, Kind::Stalled, Kind::Churn]
            .iter()
            .map(|k| (*k, Vec::new()))
            .collect();
    for (kind, h) in handles {
        let log = h.join().expect("client thread");
        kinds
            .iter_mut()
            .find(|(k, _)| *k == kind)
            .unwrap()
            .1
            .push(log);
    }
    if let Some(h) = upstream {
        let _ = h.join();
    }
    let proc_after = after_wait.and_then(|w| {
        std::thread::sleep(w);
        cfg.pid.and_then(sample)
    });
    Report {
        duration: cfg.duration,
        fps: cfg.fps,
        kinds,
        proc_start,
        proc_end,
        proc_max_rss: max_rss,
        proc_max_threads: max_threads,
        proc_after,
    }
}
