//! `scenario raw`: the ceiling (a prepared buffer to N sockets as fast as they take it), then
//! the relay fed flat out (1000 fps of 50 KB); their ratio.

use crate::args::num;
use crate::run::run_load;
use crate::servers::start_self;
use mjpeg_testkit::free_port;

pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    let n: usize = num(cx.args, "--clients-n", 100)?;
    let d = cx.duration(15.0)?;
    let h = format!("127.0.0.1:{}", free_port());
    let raw = start_self(
        &["raw-server", "--http", &h, "--frame-bytes", "50000"],
        h.clone(),
        None,
    );
    let mut cfg = cx.base(&raw, 30.0, 50_000, d);
    (cfg.up, cfg.fast, cfg.label) = (None, n, format!("raw ceiling, {n} clients"));
    let ceiling = run_load(&cfg, None);
    print!("{}", ceiling.throughput_row(&cfg.label));
    drop(raw);
    let kind = cx.server_kind;
    let srv = cx.start(kind);
    let mut cfg = cx.base(&srv, 1000.0, 50_000, d);
    (cfg.fast, cfg.label) = (
        n,
        format!(
            "raw limit ({kind}), {n} clients, upstream flat out{}",
            cx.build
        ),
    );
    let r = run_load(&cfg, None);
    print!("{}", r.rows(&cfg.label));
    eprintln!(
        "raw: {kind} delivered {:.1} MB/s, ceiling {:.1} MB/s, ratio {:.2}",
        r.delivered_bytes() as f64 / d / 1e6,
        ceiling.delivered_bytes() as f64 / d / 1e6,
        r.delivered_bytes() as f64 / ceiling.delivered_bytes().max(1) as f64
    );
    Ok(())
}
