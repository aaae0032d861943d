//! The in-flight bound on a real slow link: one viewer on a 2 Mbit/s shaped link (a private
//! network namespace, `htb` + a 100-packet `pfifo` on the relay's port; see `mjpeg-bench
//! scenario link`) stays within a few frames of live, and the same run with the bound switched
//! off is the control that shows the test can fail: it lags several times as far.
//! Needs `unshare` (util-linux) and `tc`/`ip` (Debian package iproute2), as root or with user
//! namespaces.

use mjpeg_testkit::{relay_bin, require_tool, run_with_timeout};
use std::process::Command;
use std::time::Duration;

/// (frames/s, lag p50 ms, last-fifth p99 ms) of the row whose label ends with `(server)`.
fn row(text: &str, server: &str) -> (f64, f64, f64) {
    let line = text
        .lines()
        .find(|l| l.starts_with("| link") && l.contains(&format!("({server})")))
        .unwrap_or_else(|| panic!("no row for {server} in:\n{text}"));
    let cols: Vec<&str> = line.split('|').map(str::trim).collect();
    let fps: f64 = cols[3].parse().unwrap();
    let p50: f64 = cols[4].split('/').next().unwrap().trim().parse().unwrap();
    let tail_p99: f64 = cols[5].split('/').nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(cols[7], "0", "errors: {line}");
    (fps, p50, tail_p99)
}

#[test]
fn a_viewer_on_a_2_mbit_link_stays_within_a_few_frames_of_live() {
    require_tool("tc");
    require_tool("unshare");
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_mjpeg-bench")).args([
            "scenario",
            "link",
            "--rate",
            "2mbit",
            "--queue",
            "100",
            "--duration",
            "10",
            "--servers",
            "relay,relay-nobound",
            "--relay-bin",
            relay_bin(),
        ]),
        Duration::from_secs(90),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    eprintln!("{text}{err}");
    let frame_ms = 1000.0 / 30.0;
    let (fps, p50, tail) = row(&text, "relay");
    let (fps_off, p50_off, _) = row(&text, "relay-nobound");
    // With the bound: the 20 KB frame takes ~80 ms on this link, so ~3 frames behind at 30 fps;
    // allow up to 7.5 (250 ms) for a loaded CI machine.
    assert!(p50 / frame_ms <= 7.5, "lag p50 {p50} ms with the bound");
    assert!(
        tail / frame_ms <= 12.0,
        "last-fifth p99 {tail} ms with the bound"
    );
    // The control: the same link without the bound queues in the bottleneck.
    assert!(p50_off > 400.0, "lag p50 {p50_off} ms without the bound");
    // And the bound costs no throughput.
    assert!(
        fps >= 0.9 * fps_off,
        "{fps} fps with the bound, {fps_off} without"
    );
}
