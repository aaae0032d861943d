//! Private network namespaces: a test binary re-runs one test inside `unshare -n` (as
//! root), where it may shape loopback with `tc` without touching the host.

use crate::*;
use std::process::Command;
use std::time::Duration;

/// Set in the copy of a test binary that runs one test inside a private network namespace.
const IN_NETNS: &str = "MJPEG_TEST_IN_NETNS";

/// Runs the calling test again, alone, in a copy of its test binary inside a private network
/// namespace (`unshare --net`, with `--map-root-user` when not root), so shaping its loopback
/// touches nothing of the machine's. The test is the calling thread's (the test harness
/// names each test's thread after it). Returns false when already inside (the caller then
/// runs the test body), true after the copy passed (it panics when the copy failed, with the
/// copy's output):
///
/// ```ignore
/// if mjpeg_testkit::reexec_in_netns() {
///     return;
/// }
/// ```
pub fn reexec_in_netns() -> bool {
    if std::env::var_os(IN_NETNS).is_some() {
        return false;
    }
    let thread = std::thread::current();
    let name = thread
        .name()
        .filter(|n| *n != "main")
        .expect("reexec_in_netns is called from a test's own thread (--test-threads > 0)");
    require_tool("unshare");
    require_tool("tc");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = Command::new("unshare");
    cmd.arg("--net");
    if !root {
        cmd.arg("--map-root-user");
    }
    let out = run_with_timeout(
        cmd.arg(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads", "1"])
            .env(IN_NETNS, "1")
            .env("MJPEG_RELAY_BIN", relay_bin()),
        Duration::from_secs(150),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    assert!(
        out.status.success() && text.contains("1 passed"),
        "in the namespace: {text}"
    );
    true
}

/// Runs `cmd` (words split on white space, no shell); panics with its stderr if it fails.
pub fn sh(cmd: &str) {
    let mut parts = cmd.split_whitespace();
    let out = Command::new(parts.next().unwrap())
        .args(parts)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Inside a namespace of the test's own: traffic to local port `dport` through an htb class at
/// `rate` (e.g. `2mbit`) with a 100-packet queue; everything else at full speed. Loopback is
/// brought up with a real link's MTU first.
pub fn shape_port(dport: u16, rate: &str) {
    sh("ip link set lo up");
    sh("ip link set lo mtu 1500");
    sh("tc qdisc add dev lo root handle 1: htb default 10 r2q 1000");
    sh("tc class add dev lo parent 1: classid 1:10 htb rate 10gbit");
    sh(&format!(
        "tc class add dev lo parent 1: classid 1:20 htb rate {rate}"
    ));
    sh("tc qdisc add dev lo parent 1:20 handle 20: pfifo limit 100");
    sh(&format!(
        "tc filter add dev lo protocol ip parent 1: prio 1 u32 match ip dport {dport} 0xffff flowid 1:20"
    ));
}
