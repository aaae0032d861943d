//! `scenario link`: the relay on a shaped link inside a network namespace of its own.
use crate::args::{flag, num, Args};
use crate::run::{run_load, LoadCfg};
use crate::servers::{start_naive, start_relay, start_relay_env};
use crate::upstream::UpMode;
use std::process::Command;

/// Set in the environment of the copy of this tool that runs inside the network namespace.
const IN_NETNS: &str = "MJPEG_BENCH_IN_NETNS";

/// Whether this is the copy of the tool inside the namespace.
pub(crate) fn in_namespace() -> bool {
    std::env::var_os(IN_NETNS).is_some()
}

/// Outside the namespace: re-executes this tool inside one, with the same arguments.
pub(crate) fn run_in_namespace(a: &Args, relay_bin: &str) -> Result<(), String> {
    link_scenario(a, relay_bin, 0.0)
}

/// Inside the namespace: the measurement.
pub(crate) fn run(cx: &super::Ctx) -> Result<(), String> {
    link_scenario(cx.args, &cx.relay_bin, cx.duration(30.0)?)
}

/// One viewer reading as fast as a shaped link allows, for each server in `--servers`, one
/// after another on the same link. Runs inside a private network namespace: this process
/// re-executes itself through `unshare --net` (and `--map-root-user` when not root), so the
/// shaping never touches the machine's own loopback and all traffic stays inside it.
fn link_scenario(a: &Args, relay_bin: &str, duration: f64) -> Result<(), String> {
    if std::env::var_os(IN_NETNS).is_none() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("unshare");
        cmd.arg("--net");
        if !root {
            cmd.arg("--map-root-user");
        }
        let status = cmd
            .arg(me)
            .arg("scenario")
            .args(&a.raw)
            .env(IN_NETNS, "1")
            .status()
            .map_err(|e| format!("cannot run unshare (util-linux): {e}"))?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("link scenario in the namespace: {status}"))
        };
    }
    let rate = flag(a, "--rate").unwrap_or("2mbit").to_string();
    let queue: u32 = num(a, "--queue", 100)?;
    let frame_bytes: usize = num(a, "--frame-bytes", 20_000)?;
    let (w, h) = flag(a, "--size")
        .unwrap_or("640x480")
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .ok_or("--size: WxH")?;
    let servers: Vec<String> = flag(a, "--servers")
        .unwrap_or("relay,relay-nobound,naive")
        .split(',')
        .map(String::from)
        .collect();
    sh("ip link set lo up")?;
    sh("ip link set lo mtu 1500")?;
    for kind in &servers {
        let srv = match kind.as_str() {
            "relay" | "relay-auto" => start_relay(relay_bin),
            "relay-nobound" => {
                start_relay_env(relay_bin, &[("MJPEG_RELAY_NO_INFLIGHT_BOUND", "1")])
            }
            "naive" => start_naive(),
            other => return Err(format!("--servers: unknown server '{other}'")),
        };
        let port = srv.http.rsplit(':').next().unwrap_or("0").to_string();
        shape(&rate, queue, &port)?;
        // relay-auto: the viewer asks for the size its link carries (?size=auto).
        let query = if kind == "relay-auto" {
            "?size=auto"
        } else {
            ""
        };
        let cfg = LoadCfg {
            url: format!("http://{}/stream{query}", srv.http),
            up: srv.upstream.clone().map(UpMode::Push),
            fps: 30.0,
            w,
            h,
            frame_bytes,
            fast: 1,
            slow: 0,
            stalled: 0,
            churn: 0.0,
            slow_rate: 0.0,
            duration,
            pid: Some(srv.child.id()),
            label: format!("link {rate} q{queue} {}KB ({kind})", frame_bytes / 1000),
        };
        let r = run_load(&cfg, None);
        print!("{}", r.rows(&cfg.label));
        let dropped = qdisc_drops();
        eprintln!("{}: bottleneck queue drops {dropped}", cfg.label);
        if kind.starts_with("relay") {
            let (_, _, body) = mjpeg_testkit::get(&srv.http, "/status");
            let sizes: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["streams"][0]["sizes"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    format!(
                        "{} {}x{} ({} frames)",
                        t["size"], t["width"], t["height"], t["frames"]
                    )
                })
                .collect();
            eprintln!(
                "{}: sizes running at the end: {}",
                cfg.label,
                if sizes.is_empty() {
                    "none".into()
                } else {
                    sizes.join(", ")
                }
            );
        }
        drop(srv);
    }
    Ok(())
}

/// Replaces the shaping on `lo`: traffic from `port` (the server's HTTP side) through an htb
/// class at `rate` with a `queue`-packet pfifo; everything else at full speed.
pub(crate) fn shape(rate: &str, queue: u32, port: &str) -> Result<(), String> {
    let _ = sh("tc qdisc del dev lo root");
    sh("tc qdisc add dev lo root handle 1: htb default 10 r2q 1000")?;
    sh("tc class add dev lo parent 1: classid 1:10 htb rate 10gbit")?;
    sh(&format!(
        "tc class add dev lo parent 1: classid 1:20 htb rate {rate}"
    ))?;
    sh(&format!(
        "tc qdisc add dev lo parent 1:20 handle 20: pfifo limit {queue}"
    ))?;
    sh(&format!(
        "tc filter add dev lo protocol ip parent 1: prio 1 u32 match ip sport {port} 0xffff flowid 1:20"
    ))
}

pub(crate) fn qdisc_drops() -> String {
    Command::new("tc")
        .args(["-s", "qdisc", "show", "dev", "lo", "parent", "1:20"])
        .output()
        .ok()
        .and_then(|o| {
            let t = String::from_utf8_lossy(&o.stdout).to_string();
            let i = t.find("dropped ")?;
            Some(t[i + 8..].split(',').next()?.to_string())
        })
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn sh(cmd: &str) -> Result<(), String> {
    let mut parts = cmd.split_whitespace();
    let prog = parts.next().unwrap_or("true");
    let out = Command::new(prog)
        .args(parts)
        .output()
        .map_err(|e| format!("{cmd}: {e} (install iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
