//! `scenario live`: one fast, one slow (50 KB/s) and one stalled client for a minute; prints
//! the slow client's lag over time, in frames.

use crate::run::run_load;

pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    let srv = cx.start(cx.server_kind);
    let mut cfg = cx.base(&srv, 30.0, 20_000, cx.duration(60.0)?);
    (cfg.fast, cfg.slow, cfg.stalled) = (1, 1, 1);
    let r = run_load(&cfg, None);
    print!("{}", r.rows(&cfg.label));
    // The slow client's lag over time, in frames: newest sent at receive vs received.
    let slow = &r.kinds[1].1[0];
    let mut line = format!(
        "{}: slow client lag over time (s since start: frames behind at 30 fps): ",
        cfg.label
    );
    let mut next_t = 0.0f32;
    for f in &slow.frames {
        if f.0 >= next_t {
            line += &format!("{:.0}s:{:.0} ", f.0, f.1 as f64 / 1e6 * r.fps);
            next_t += cfg.duration as f32 / 12.0;
        }
    }
    eprintln!("{}", line.trim_end());
    if let Some(cpu) = r.server_cpu_secs() {
        eprintln!(
            "{}: server CPU {:.1}% of a core",
            cfg.label,
            cpu * 100.0 / r.duration
        );
    }
    Ok(())
}
