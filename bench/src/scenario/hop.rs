//! `scenario hop`: an origin and an edge pulling it over HTTP, a fast viewer on each: the
//! same frames, so the difference is what one hop adds.

use crate::run::run_load;
use crate::servers::start_relay_with;

pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    let origin = cx.start(cx.server_kind);
    let edge = start_relay_with(
        &cx.relay_bin,
        &[],
        &format!("http://{}/stream", origin.http),
    );
    let d = cx.duration(30.0)?;
    let mut at_edge = cx.base(&edge, 30.0, 20_000, d);
    (at_edge.up, at_edge.fast) = (None, 1);
    at_edge.label = "hop: viewer of the edge".into();
    let edge_run = std::thread::spawn(move || {
        let r = run_load(&at_edge, None);
        r.rows(&at_edge.label)
    });
    let mut at_origin = cx.base(&origin, 30.0, 20_000, d);
    at_origin.fast = 1;
    at_origin.label = "hop: viewer of the origin".into();
    let r = run_load(&at_origin, None);
    print!("{}", r.rows(&at_origin.label));
    print!("{}", edge_run.join().expect("edge run"));
    Ok(())
}
