//! The README's commands, as a newcomer runs them (issue 32): every command in it that needs
//! no camera (the first command, watching from another device, the dashboard without a camera,
//! ffmpeg's test picture) is read out of README.md itself, split as `sh` splits it, and run
//! against the real binary; each stream it names must then serve a whole JPEG. So a recipe
//! that drifts from what the relay accepts fails here, not in a newcomer's first minute.
//!
//! One change to what is written: `--http` is set to `127.0.0.1:0`, so that tests running at
//! once do not fight over port 8080 (what the README asks for is checked to be a valid
//! listening address, and `--allow-host` is checked with the `Host` a phone would send).

use mjpeg_relay::testjpeg::is_whole_jpeg;
use mjpeg_testkit::*;
use std::process::Command;

/// Every indented command line of the README that starts the relay, continuation lines
/// joined: the program (`cargo run --release` or `mjpeg-relay`) cut off, the rest as written.
fn readme_commands() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(cmd) = line.strip_prefix("    ") else {
            continue;
        };
        let mut cmd = cmd.trim().to_string();
        while cmd.ends_with('\\') {
            cmd.pop();
            cmd.push(' ');
            cmd.push_str(lines.next().unwrap_or("").trim());
        }
        let args = if cmd == "cargo run --release" {
            Some("")
        } else {
            cmd.strip_prefix("cargo run --release -- ")
                .or_else(|| cmd.strip_prefix("mjpeg-relay "))
        };
        if let Some(args) = args {
            out.push((cmd.clone(), args.to_string()));
        }
    }
    out
}

/// A command that needs nothing a fresh machine lacks: no camera device, no camera on the
/// network, no files of the user's, not the first half of a two-process recipe.
fn camera_free(cmd: &str) -> bool {
    let needs = [
        "/dev/video",
        "192.168.",
        "10.0.0.",
        "/etc/",
        "/run/",
        "…",
        "tcp-listen:",
        "unix:",
        "fullchain",
    ];
    !needs.iter().any(|n| cmd.contains(n)) && !cmd.trim_end().ends_with('&')
}

/// `args` split into words as `sh` splits them (quotes and all).
fn shell_words(args: &str) -> Vec<String> {
    let out = Command::new("sh")
        .args([
            "-c",
            "eval \"set -- $1\"; printf '%s\\0' \"$@\"",
            "sh",
            args,
        ])
        .output()
        .expect("sh");
    assert!(out.status.success(), "sh could not split: {args}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn the_readmes_camera_free_commands_run_as_written() {
    let commands: Vec<_> = readme_commands()
        .into_iter()
        .filter(|(cmd, _)| camera_free(cmd))
        .collect();
    // The control against a reader that finds nothing: the commands the README opens with.
    let found: Vec<&str> = commands.iter().map(|(c, _)| c.as_str()).collect();
    assert!(found.contains(&"cargo run --release"), "{found:?}");
    assert!(
        found.iter().any(|c| c.contains("--allow-host")),
        "{found:?}"
    );
    assert!(found.iter().any(|c| c.contains("--stream")), "{found:?}");
    assert!(found.iter().any(|c| c.contains("exec:ffmpeg")), "{found:?}");
    for (cmd, args) in &commands {
        if cmd.contains("ffmpeg") {
            require_tool("ffmpeg");
        }
        let mut words = shell_words(args);
        // The address the README asks for is a valid one; the test listens on a free port.
        if let Some(i) = words.iter().position(|w| w == "--http") {
            let asked = words.remove(i + 1);
            words.remove(i);
            assert!(
                asked.parse::<std::net::SocketAddr>().is_ok(),
                "{cmd}: --http {asked}"
            );
        }
        let argv: Vec<&str> = words.iter().map(String::as_str).collect();
        let relay = Relay::start(&argv);
        let names: Vec<&str> = words
            .iter()
            .zip(words.iter().skip(1))
            .filter(|(flag, _)| *flag == "--stream")
            .filter_map(|(_, v)| v.split_once('=').map(|(n, _)| n))
            .collect();
        let paths: Vec<String> = if names.is_empty() {
            vec!["/snapshot".into()]
        } else {
            names.iter().map(|n| format!("/{n}/snapshot")).collect()
        };
        for path in &paths {
            let (code, _, body) = get(&relay.http, path);
            assert_eq!(code, 200, "{cmd}: {path}: {}", relay.log_text());
            assert!(is_whole_jpeg(&body), "{cmd}: {path}");
        }
        // Watching from another device: the name it is opened by is answered, another is not.
        if let Some(i) = words.iter().position(|w| w == "--allow-host") {
            let port = relay.http.rsplit(':').next().unwrap();
            let page = |host: &str| {
                request(
                    &relay.http,
                    &format!("GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"),
                )
                .0
            };
            assert_eq!(page(&words[i + 1]), 200, "{cmd}");
            assert_eq!(page("elsewhere.example"), 403, "{cmd}: the control");
        }
    }
    assert!(commands.len() >= 4, "{found:?}");
}

/// The README tells a newcomer how to watch from another device before any recipe, and the
/// flags it names there are the relay's own.
#[test]
fn the_readme_says_how_to_watch_from_another_device_before_the_recipes() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let at = |s: &str| readme.find(s).unwrap_or_else(|| panic!("README lacks {s}"));
    assert!(at("scripts/test") < at("## Watch from another device"));
    assert!(at("## Watch from another device") < at("## Recipes"));
    for words in ["--http 0.0.0.0:8080", "--allow-host", ".local"] {
        assert!(at(words) < at("## Recipes"), "{words}");
    }
}
