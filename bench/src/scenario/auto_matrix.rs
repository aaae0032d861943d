//! `scenario auto-matrix`: `?size=auto` against an oracle on a matrix of links (issue 30).
//!
//! Each cell is a link made by the testkit's delay line (two TUN devices between network
//! namespaces of this process's own: a rate, a round trip, a router queue of 100 packets) and a
//! viewer that acknowledges at once or delays its ACKs (`TCP_QUICKACK` off, as Windows and
//! macOS receivers do). The oracle is measured in the same cell: the frame rate each fixed size
//! (`?width=`) reaches on that link; the right size is the largest that carries 95% of the
//! camera's rate. Then an `auto` viewer: the size it ends at, its frame rate, when it settled
//! and how often it changed. Prints one Markdown table (docs/sizes.md).

use crate::args::{flag, num, Args};
use mjpeg_testkit::delayline::{DelayLine, Shape, SERVER};
use mjpeg_testkit::watch::{watch, Reader, FAST};
use mjpeg_testkit::Relay;
use std::process::Command;
use std::time::Duration;

/// Set in the environment of the copy of this tool that runs inside the namespace.
const IN_NETNS: &str = "MJPEG_BENCH_MATRIX_IN_NETNS";

/// The sizes a 640x480 camera has, as `?width=` asks them.
const SIZES: [(u16, &str); 4] = [(640, "full"), (320, "1/2"), (160, "1/4"), (80, "1/8")];

pub(crate) fn run(a: &Args, relay_bin: &str) -> Result<(), String> {
    if std::env::var_os(IN_NETNS).is_none() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("auto-matrix makes TUN devices: run it as root".into());
        }
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let status = Command::new("unshare")
            .arg("--net")
            .arg(me)
            .arg("scenario")
            .args(&a.raw)
            .env(IN_NETNS, "1")
            .env("MJPEG_RELAY_BIN", relay_bin)
            .status()
            .map_err(|e| format!("cannot run unshare (util-linux): {e}"))?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("auto-matrix in the namespace: {status}"))
        };
    }
    let list = |name: &str, default: &str| -> Result<Vec<f64>, String> {
        flag(a, name)
            .unwrap_or(default)
            .split(',')
            .map(|v| v.parse().map_err(|_| format!("{name}: bad value '{v}'")))
            .collect()
    };
    let rates = list("--rates", "0.3,1,2,10,100,0")?;
    let rtts = list("--rtts", "0,50,150")?;
    let acks: Vec<bool> = flag(a, "--acks")
        .unwrap_or("quick,delayed")
        .split(',')
        .map(|v| v == "delayed")
        .collect();
    let auto_secs: u64 = num(a, "--auto-seconds", 15)?;
    let fps = 30.0;
    println!(
        "| link | RTT | ACKs | fixed sizes: frames/s (full, 1/2, 1/4, 1/8) | oracle | auto: \
         size | auto: frames/s | settled after | changes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &mbit in &rates {
        for &rtt in &rtts {
            for &delay_acks in &acks {
                let rate = (mbit > 0.0).then_some(mbit * 125_000.0);
                let line = DelayLine::start(Shape {
                    one_way: Duration::from_secs_f64(rtt / 2000.0),
                    rate,
                    // 100 packets of 1500 bytes at the link's rate.
                    queue: rate.map_or(Duration::from_millis(100), |r| {
                        Duration::from_secs_f64(150_000.0 / r)
                    }),
                });
                let relay = Relay::start_on(
                    &format!("{SERVER}:0"),
                    &["--size", "640x480", "--fps", "30", "--history", "0"],
                );
                std::thread::sleep(Duration::from_millis(500));
                let reader = Reader {
                    delay_acks,
                    line: Some(&line),
                    ..FAST
                };
                let fixed: Vec<f64> = SIZES
                    .iter()
                    .map(|(w, _)| {
                        let path = format!("/stream?width={w}");
                        watch(
                            &relay,
                            &path,
                            reader,
                            Duration::from_secs(5),
                            Duration::from_secs(3),
                        )
                        .fps
                    })
                    .collect();
                let oracle = SIZES
                    .iter()
                    .zip(&fixed)
                    .find(|(_, f)| **f >= 0.95 * fps)
                    .map_or("none (1/8)", |((_, name), _)| name);
                let run = Duration::from_secs(auto_secs);
                let auto = watch(
                    &relay,
                    "/stream?size=auto",
                    reader,
                    run,
                    Duration::from_secs(5),
                );
                let size = auto.sizes.last().cloned().unwrap_or_default();
                let settled = auto.changed_at.last().copied().unwrap_or_default();
                let link = if mbit > 0.0 {
                    format!("{mbit} Mbit/s")
                } else {
                    "unshaped".into()
                };
                println!(
                    "| {link} | {rtt} ms | {} | {} | {oracle} | {size} | {:.1} | {:.1} s | {} |",
                    if delay_acks { "delayed" } else { "quick" },
                    fixed
                        .iter()
                        .map(|f| format!("{f:.0}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    auto.fps,
                    settled.as_secs_f64(),
                    auto.sizes.len().saturating_sub(1),
                );
                drop(relay);
                drop(line);
            }
        }
    }
    Ok(())
}
