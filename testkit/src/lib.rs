//! Test helpers shared by the relay's integration tests (`tests/`) and the benchmark's
//! (`bench/tests/`), one module per concern; everything is re-exported here, so a test says
//! `mjpeg_testkit::Relay` whatever file it lives in.
//!
//! | module | what |
//! |---|---|
//! | [`relay`] | the binary under test on an ephemeral port, its log and `/status` |
//! | [`client`] | requests, heads and streams read on plain sockets ([`StreamClient`]) |
//! | [`upstream`] | a paced upstream writing numbered frames |
//! | [`frames`] | the frames: numbered, padded, gstreamer parts, webcam-like |
//! | [`tools`] | external programs (with their Debian packages), helpers, temp dirs, ports |
//! | [`netns`] | one test re-run in a private network namespace, `tc` shaping there |
//! | [`delayline`], [`watch`] | a user-space delay line (round trip, rate); a viewer's sizes and rate |
//! | [`browser`] | Chromium, Firefox and WebKitGTK driven over WebDriver |
//!
//! A dev-only crate (never published, never installed): it lives in the workspace so the
//! benchmark and the tests share one copy of these helpers instead of each keeping its own.

pub mod browser;
pub mod client;
pub mod delayline;
pub mod frames;
pub mod netns;
pub mod relay;
pub mod tools;
pub mod upstream;
pub mod watch;

pub use client::*;
pub use frames::*;
pub use netns::*;
pub use relay::*;
pub use tools::*;
pub use upstream::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_debian_package() {
        let e = std::panic::catch_unwind(|| require_tool("xvfb-run-that-is-not-there"))
            .expect_err("a missing tool fails");
        let msg = e.downcast_ref::<String>().unwrap();
        assert!(msg.contains("sudo apt-get install"), "{msg}");
        // Every program the suite runs maps to a package that scripts/test installs.
        let script =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test"))
                .unwrap();
        for (tool, package) in TOOL_PACKAGES {
            assert!(
                script.contains(&format!(" {package}")) || script.contains(&format!("({package}")),
                "{tool}: package {package} is not in scripts/test"
            );
        }
        require_tool("sh");
    }
}
