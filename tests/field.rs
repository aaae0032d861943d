//! Faults as they happen in deployments (issue 20): a path that points at a file, a camera
//! that dies behind a live origin, fallbacks that idle, a closed tab on a slow link (in
//! `bench/tests/link.rs`, which owns the shaped link), one host holding every slot, secrets in
//! command lines, and the small ones. Each test has a control that shows it can fail.

use mjpeg_relay::testjpeg::{is_whole_jpeg, jpeg_with_seq, seq_of};
use mjpeg_testkit::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Item 1: `--http unix:PATH` never deletes what is at PATH unless it is a stale socket, and
/// at exit removes only the socket it created.
#[test]
fn http_unix_refuses_a_path_that_is_not_a_socket_and_removes_only_its_own() {
    let dir = TempDir::new("unix-path");
    let notes = dir.0.join("notes.txt");
    std::fs::write(&notes, "keep\n").unwrap();
    let out = run_with_timeout(
        Command::new(relay_bin())
            .args(["--http", &format!("unix:{}", notes.display())])
            .stdin(Stdio::null()),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not a socket") && err.contains("--http"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "keep\n");

    // A directory too.
    let sub = dir.0.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = run_with_timeout(
        Command::new(relay_bin())
            .args(["--http", &format!("unix:{}", sub.display())])
            .stdin(Stdio::null()),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(sub.is_dir());

    // The control: a stale socket (nobody answers) is replaced, and removed at exit.
    let sock = dir.0.join("relay.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut relay = Relay::start_unix(sock.to_str().unwrap(), &[]);
    relay.signal(libc::SIGTERM);
    relay.wait_exit(Duration::from_secs(5));
    assert!(!sock.exists(), "the relay's own socket is removed at exit");

    // A file put in place of the socket while the relay runs is not removed at exit.
    let mut relay = Relay::start_unix(sock.to_str().unwrap(), &[]);
    std::fs::remove_file(&sock).unwrap();
    std::fs::write(&sock, "someone else's\n").unwrap();
    relay.signal(libc::SIGTERM);
    relay.wait_exit(Duration::from_secs(5));
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "someone else's\n");
}
