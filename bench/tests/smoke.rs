//! A quick run of the benchmark tool, so it keeps working: 3 s against the real relay binary.
//! It asserts what the tool reports (rows for every client kind, no errors), not speed.

use mjpeg_testkit::{relay_bin, run_with_timeout};
use std::process::Command;
use std::time::Duration;

#[test]
fn bench_smoke_scenario_reports_every_client_kind_without_errors() {
    smoke("relay");
}

/// The toy baseline the relay's cost per viewer is compared with must itself deliver frames,
/// or the comparison would flatter the relay.
#[test]
fn the_toy_baseline_serves_every_client_kind_without_errors() {
    smoke("toy");
}

fn smoke(server: &str) {
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_mjpeg-bench")).args([
            "scenario",
            "smoke",
            "--server",
            server,
            "--duration",
            "3",
            "--relay-bin",
            relay_bin(),
        ]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["fast", "slow", "stalled"] {
        let row = text
            .lines()
            .find(|l| l.starts_with("| smoke") && l.contains(kind))
            .unwrap_or_else(|| panic!("no {kind} row in:\n{text}"));
        let cols: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cols[7], "0", "errors for {kind}: {row}");
        if kind == "fast" {
            let fps: f64 = cols[3].parse().unwrap();
            assert!(fps > 0.0, "{row}");
        }
    }
}
