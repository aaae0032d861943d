//! `scenario churn`: 20 steady clients and 50 connects per second for a minute; threads,
//! descriptors and memory before, at the end and 20 s after (nothing may leak).

use crate::procfs::sample;
use crate::run::run_load;
use std::time::Duration;

pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    let srv = cx.start(cx.server_kind);
    let before = sample(srv.child.id());
    let mut cfg = cx.base(&srv, 30.0, 20_000, cx.duration(60.0)?);
    (cfg.fast, cfg.churn) = (20, 50.0);
    let r = run_load(&cfg, Some(Duration::from_secs(20)));
    print!("{}", r.rows(&cfg.label));
    if let (Some(b), Some(e), Some(a)) = (before, r.proc_end, r.proc_after) {
        eprintln!(
            "churn: threads {} -> {} (during max {}) -> {} 20 s after; fds {} -> {} -> {}; RSS {:.1} -> {:.1} -> {:.1} MB",
            b.threads, e.threads, r.proc_max_threads, a.threads, b.fds, e.fds, a.fds,
            b.rss_kb as f64 / 1024.0, e.rss_kb as f64 / 1024.0, a.rss_kb as f64 / 1024.0
        );
    }
    Ok(())
}
