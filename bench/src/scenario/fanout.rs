//! `scenario fanout` (many fast clients of one 30 fps stream; CPU per delivered GB and per
//! delivered frame) and `scenario big` (50 clients of 200 KB frames).

use crate::args::{flag, num};
use crate::run::run_load;

pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    let a = cx.args;
    let counts: Vec<usize> = flag(a, "--clients")
        .unwrap_or("100,250,500,1000")
        .split(',')
        .map(|c| c.parse().map_err(|_| "--clients: list of numbers"))
        .collect::<Result<_, _>>()?;
    // `--servers relay,toy --pairs 3`: the servers in turn, A B A B …, so a drift of the
    // machine's speed hits both alike; each run's cost per delivered frame.
    let servers: Vec<String> = flag(a, "--servers")
        .unwrap_or(cx.server_kind)
        .split(',')
        .map(String::from)
        .collect();
    let pairs: usize = if flag(a, "--relay-bins").is_some() {
        1 // the builds alternate around this scenario already
    } else {
        num(a, "--pairs", 1)?
    };
    let bytes: usize = num(a, "--frame-bytes", 50_000)?;
    for n in counts {
        for _ in 0..pairs {
            for kind in &servers {
                let srv = cx.start(kind);
                let mut cfg = cx.base(&srv, 30.0, bytes, cx.duration(30.0)?);
                cfg.fast = n;
                cfg.label = format!("fan-out {n} ({kind}){}", cx.build);
                let r = run_load(&cfg, None);
                print!("{}", r.rows(&cfg.label));
                if let (Some(cpu), Some(end)) = (r.server_cpu_secs(), r.proc_end) {
                    let gb = r.delivered_bytes() as f64 / 1e9;
                    let frames = r.delivered_frames().max(1) as f64;
                    eprintln!(
                        "{}: server CPU {:.2} s per delivered GB, {:.1} us per delivered \
                         frame; RSS per client {:.1} KB",
                        cfg.label,
                        cpu / gb,
                        cpu * 1e6 / frames,
                        end.rss_kb as f64 / n as f64
                    );
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn big(cx: &super::Ctx) -> Result<(), String> {
    let srv = cx.start(cx.server_kind);
    let mut cfg = cx.base(&srv, 30.0, 200_000, cx.duration(30.0)?);
    cfg.fast = 50;
    let r = run_load(&cfg, None);
    print!("{}", r.rows(&cfg.label));
    Ok(())
}
