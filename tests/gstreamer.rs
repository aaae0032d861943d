//! The seed's real pipeline: gstreamer's videotestsrc → jpegenc → multipartmux, into the relay
//! over tcpclientsink and through a pipe, read back over HTTP. Never skipped: `.ci/run`
//! installs gstreamer, and a missing gst-launch-1.0 fails the test with the reason.

use mjpeg_relay::testjpeg::is_whole_jpeg;
use mjpeg_testkit::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn pipeline_head() -> Vec<String> {
    "videotestsrc is-live=true num-buffers=150 ! video/x-raw,framerate=30/1,width=320,height=240 \
     ! jpegenc ! multipartmux boundary=spionisto"
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn read_frames(relay: &Relay, want: usize) -> Vec<Vec<u8>> {
    let mut client = StreamClient::open(&relay.http, "/stream", "curl/8.0", None);
    let mut frames = Vec::new();
    while frames.len() < want {
        match client.next_frame(Duration::from_secs(10)) {
            Some(f) => frames.push(f),
            None => break,
        }
    }
    frames
}

#[test]
fn gst_tcpclientsink_into_tcp_listen() {
    require_tool("gst-launch-1.0");
    let relay = Relay::start(&["--source", "tcp-listen:127.0.0.1:0"]);
    let up = relay.upstream.clone().unwrap();
    let (host, port) = up.rsplit_once(':').unwrap();
    let mut args = pipeline_head();
    args.extend(["!", "tcpclientsink"].map(String::from));
    args.push(format!("host={host}"));
    args.push(format!("port={port}"));
    let mut gst = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gst-launch-1.0");
    let frames = read_frames(&relay, 30);
    let status = relay.status();
    let _ = gst.kill();
    let _ = gst.wait();
    assert!(
        frames.len() >= 30,
        "got {} frames from gstreamer",
        frames.len()
    );
    assert!(frames.iter().all(|f| is_whole_jpeg(f)));
    // Distinct pictures, not one frame repeated.
    assert!(frames.windows(2).filter(|w| w[0] != w[1]).count() >= 20);
    assert_eq!(
        status["streams"][0]["source"]["format"],
        "multipart boundary=spionisto"
    );
    assert_eq!(status["streams"][0]["source"]["dropped"]["not_jpeg"], 0);
}

#[test]
fn gst_fdsink_piped_into_stdin() {
    require_tool("gst-launch-1.0");
    let mut args = pipeline_head();
    args.extend(["!", "fdsink", "fd=1"].map(String::from));
    let mut gst = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run gst-launch-1.0");
    let pipe = gst.stdout.take().unwrap();
    let relay = Relay::start_with_stdin(&["--source", "stdin"], pipe);
    let frames = read_frames(&relay, 30);
    let _ = gst.kill();
    let _ = gst.wait();
    assert!(
        frames.len() >= 30,
        "got {} frames through the pipe",
        frames.len()
    );
    assert!(frames.iter().all(|f| is_whole_jpeg(f)));
    // When the pipeline ends, the stream has ended, and every place says so (the full check,
    // with the SOURCE ENDED picture, is in tests/operator.rs).
    assert!(relay.wait_log("stdin reached end of input", Duration::from_secs(15)));
    assert_eq!(relay.status()["streams"][0]["source"]["state"], "ended");
    let (code, _, body) = get(&relay.http, "/snapshot");
    assert_eq!(code, 503);
    assert!(String::from_utf8_lossy(&body).contains("The source ended"));
}
