//! `scenario smoke`: a few seconds of fast, slow and stalled clients; fails unless every fast
//! client got frames, in order and whole. CI runs it against the relay and the toy.

use crate::run::run_load;

pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    let srv = cx.start(cx.server_kind);
    let mut cfg = cx.base(&srv, 30.0, 20_000, cx.duration(3.0)?);
    (cfg.fast, cfg.slow, cfg.stalled) = (2, 1, 1);
    let r = run_load(&cfg, None);
    print!("{}", r.rows(&cfg.label));
    let fast = &r.kinds[0].1;
    if fast
        .iter()
        .any(|l| l.frames.len() < 10 || l.dup_or_reorder + l.invalid > 0)
    {
        return Err("smoke: a fast client got too few frames or bad ones".into());
    }
    Ok(())
}
