//! `scenario NAME`: each of the README's scenarios end to end, one module each. Every
//! scenario starts the servers it measures itself ([`crate::servers`]) and prints the common
//! table ([`crate::run::Report`]); what it adds is its own shape of load and its own summary.
//!
//! `--relay-bins A,B --pairs N` runs the scenario N times with each relay build in turn (A B A
//! B …), so a drift of the machine's speed hits both alike: the before/after of a change.

mod auto_matrix;
mod churn;
mod fanout;
mod hop;
mod link;
mod live;
mod mux;
mod pi;
mod raw;
mod smoke;
mod transcode;

use crate::args::{flag, num, Args};
use crate::run::{table_header, LoadCfg};
use crate::servers::{start_naive, start_relay, start_toy, Server};
use crate::upstream::UpMode;

/// What every scenario is given: its options, which server to run and which relay build.
pub(crate) struct Ctx<'a> {
    pub(crate) args: &'a Args,
    pub(crate) name: &'a str,
    /// `--server`: relay, naive or toy.
    pub(crate) server_kind: &'a str,
    /// The relay binary of this run (`--relay-bin`, or one of `--relay-bins`).
    pub(crate) relay_bin: String,
    /// Appended to labels when several builds are compared (`(A)`, `(B)`).
    pub(crate) build: String,
}

impl Ctx<'_> {
    /// `--duration`, or the scenario's default.
    pub(crate) fn duration(&self, default: f64) -> Result<f64, String> {
        num(self.args, "--duration", default)
    }

    /// A server of `kind` (relay, naive, toy) with a push upstream.
    pub(crate) fn start(&self, kind: &str) -> Server {
        match kind {
            "naive" => start_naive(),
            "toy" => start_toy(),
            _ => start_relay(&self.relay_bin),
        }
    }

    /// The load of most scenarios: `/stream` of `srv`, its upstream at `fps` frames of `bytes`.
    pub(crate) fn base(&self, srv: &Server, fps: f64, bytes: usize, duration: f64) -> LoadCfg {
        // `--query width=320`: the viewers ask for a size (or anything else).
        let query = flag(self.args, "--query").map_or(String::new(), |q| format!("?{q}"));
        LoadCfg {
            url: format!("http://{}/stream{query}", srv.http),
            up: srv.upstream.clone().map(UpMode::Push),
            fps,
            w: 640,
            h: 480,
            frame_bytes: bytes,
            fast: 0,
            slow: 0,
            stalled: 0,
            churn: 0.0,
            slow_rate: 51_200.0,
            duration,
            pid: Some(srv.child.id()),
            label: format!("{} ({}){}", self.name, self.server_kind, self.build),
        }
    }
}

pub(crate) fn scenario(a: &Args) -> Result<(), String> {
    let name = a
        .positional
        .first()
        .ok_or("scenario needs a name")?
        .as_str();
    let server_kind = flag(a, "--server").unwrap_or("relay");
    let single = flag(a, "--relay-bin").unwrap_or("target/release/mjpeg-relay");
    let bins: Vec<&str> = match flag(a, "--relay-bins") {
        Some(list) => list.split(',').filter(|b| !b.is_empty()).collect(),
        None => vec![single],
    };
    let pairs: usize = if bins.len() > 1 {
        num(a, "--pairs", 1)?
    } else {
        1
    };
    if name == "transcode" {
        // Runs no server: the relay's own code in this process, and ffmpeg.
        let cx = Ctx {
            args: a,
            name,
            server_kind,
            relay_bin: single.to_string(),
            build: String::new(),
        };
        return transcode::run(&cx);
    }
    if name == "auto-matrix" {
        // Its own table, in namespaces of its own.
        return auto_matrix::run(a, single);
    }
    if name == "link" && !link::in_namespace() {
        return link::run_in_namespace(a, single); // re-executes itself in a namespace
    }
    // mux and pi print their own lines and tables, not the per-client table.
    if name != "mux" && name != "pi" {
        println!("{}", table_header());
    }
    for _ in 0..pairs {
        for (i, bin) in bins.iter().enumerate() {
            let cx = Ctx {
                args: a,
                name,
                server_kind,
                relay_bin: bin.to_string(),
                build: if bins.len() > 1 {
                    format!(" [{}]", (b'A' + i as u8) as char)
                } else {
                    String::new()
                },
            };
            if bins.len() > 1 {
                eprintln!("{name}: build {} is {bin}", cx.build.trim());
            }
            match name {
                "smoke" => smoke::run(&cx)?,
                "live" => live::run(&cx)?,
                "fanout" => fanout::run(&cx)?,
                "raw" => raw::run(&cx)?,
                "churn" => churn::run(&cx)?,
                "big" => fanout::big(&cx)?,
                "link" => link::run(&cx)?,
                "hop" => hop::run(&cx)?,
                "mux" => mux::run(&cx)?,
                "pi" => pi::run(&cx)?,
                "transcode" => transcode::run(&cx)?,
                other => return Err(format!("unknown scenario '{other}'")),
            }
        }
    }
    Ok(())
}
