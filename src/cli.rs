//! Command line: flags to a [`Config`], and the `--help` text.
//!
//! Parsing is strict (an unknown flag or a bad value is an error, exit code 2) because a camera
//! server usually starts unattended: better to refuse at start-up than to run misconfigured.

use crate::source::SourceSpec;
use std::ffi::OsString;
use std::time::Duration;

/// Everything the command line sets.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: SourceSpec,
    /// The `--source` text, for `/status` and logs.
    pub source_text: String,
    pub http: String,
    pub fps: f64,
    pub width: u16,
    pub height: u16,
    pub max_frame_bytes: usize,
    pub send_timeout: Duration,
    pub max_clients: usize,
    pub log_level: log::LevelFilter,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            source: SourceSpec::TestSrc,
            source_text: "testsrc".into(),
            http: "127.0.0.1:8080".into(),
            fps: 15.0,
            width: 640,
            height: 480,
            max_frame_bytes: 8 << 20,
            send_timeout: Duration::from_secs(10),
            max_clients: 1000,
            log_level: log::LevelFilter::Info,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

pub const HELP: &str = "\
mjpeg-relay: relay a live MJPEG stream to many HTTP clients, always live.

Slow clients skip frames instead of falling behind; every buffer between the camera and a
viewer is bounded, including the kernel's socket send buffer.

USAGE:
    mjpeg-relay [OPTIONS]

With no options it serves a built-in test pattern at http://127.0.0.1:8080/

OPTIONS:
    --source SPEC           Where frames come from [default: testsrc]
                              testsrc               built-in moving test pattern
                              tcp-listen:HOST:PORT  accept an upstream (gstreamer tcpclientsink);
                                                    a bare PORT means 127.0.0.1:PORT
                              stdin, -              MJPEG on standard input
    --http HOST:PORT        Where to serve HTTP [default: 127.0.0.1:8080]
    --fps N                 testsrc frame rate [default: 15]
    --size WxH              testsrc frame size [default: 640x480]
    --max-frame-bytes N     Drop frames larger than this; K/M suffixes [default: 8M]
    --send-timeout SECS     Disconnect a client that cannot take a frame in this time [default: 10]
    --max-clients N         Concurrent HTTP requests; more get 503 [default: 1000]
    --log-level LEVEL       error, warn, info, debug or trace [default: info]
    -v, --verbose           Same as --log-level debug
    -q, --quiet             Same as --log-level warn
    -h, --help              Print this help
    -V, --version           Print the version

ENDPOINTS:
    /            viewer page          /stream    multipart/x-mixed-replace MJPEG
    /snapshot    newest frame (JPEG)  /status    JSON: source state, rates, clients

EXAMPLES:
    # The test pattern, no camera needed:
    mjpeg-relay

    # A camera through gstreamer, pushing into the relay:
    mjpeg-relay --source tcp-listen:127.0.0.1:9999 &
    gst-launch-1.0 v4l2src device=/dev/video0 ! video/x-raw,framerate=15/1,width=640,height=480 \\
      ! jpegenc ! multipartmux boundary=spionisto ! tcpclientsink host=127.0.0.1 port=9999

    # The same through a pipe:
    gst-launch-1.0 -q v4l2src ! jpegenc ! multipartmux ! fdsink fd=1 | mjpeg-relay --source stdin

    # ffmpeg writing raw JPEGs to the pipe, served on all interfaces:
    ffmpeg -f v4l2 -i /dev/video0 -c:v mjpeg -f mjpeg - | mjpeg-relay --source - --http 0.0.0.0:8080

EXIT CODES:
    0  stopped by SIGINT or SIGTERM     1  could not start (e.g. address in use)
    2  bad command line
";

/// Parses the command line (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut cfg = Config::default();
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('v') | Long("verbose") => cfg.log_level = log::LevelFilter::Debug,
            Short('q') | Long("quiet") => cfg.log_level = log::LevelFilter::Warn,
            Long("source") => {
                let v = string(&mut p, "--source")?;
                cfg.source = SourceSpec::parse(&v).map_err(|e| format!("--source: {e}"))?;
                cfg.source_text = v;
            }
            Long("http") => {
                let v = string(&mut p, "--http")?;
                if std::net::ToSocketAddrs::to_socket_addrs(&v.as_str()).is_err() {
                    return Err(format!("--http: '{v}' is not HOST:PORT"));
                }
                cfg.http = v;
            }
            Long("fps") => {
                let v = string(&mut p, "--fps")?;
                cfg.fps = v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| (0.1..=240.0).contains(f))
                    .ok_or_else(|| format!("--fps: '{v}' is not a rate between 0.1 and 240"))?;
            }
            Long("size") => {
                let v = string(&mut p, "--size")?;
                let (w, h) = parse_size(&v).ok_or_else(|| {
                    format!("--size: '{v}' is not WIDTHxHEIGHT with each from 16 to 8192")
                })?;
                cfg.width = w;
                cfg.height = h;
            }
            Long("max-frame-bytes") => {
                let v = string(&mut p, "--max-frame-bytes")?;
                cfg.max_frame_bytes = parse_bytes(&v)
                    .filter(|&n| (1024..=1 << 30).contains(&n))
                    .ok_or_else(|| {
                        format!("--max-frame-bytes: '{v}' is not a size from 1K to 1024M")
                    })?;
            }
            Long("send-timeout") => {
                let v = string(&mut p, "--send-timeout")?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.1..=3600.0).contains(s))
                    .ok_or_else(|| {
                        format!("--send-timeout: '{v}' is not seconds between 0.1 and 3600")
                    })?;
                cfg.send_timeout = Duration::from_secs_f64(secs);
            }
            Long("max-clients") => {
                let v = string(&mut p, "--max-clients")?;
                cfg.max_clients = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| {
                        format!("--max-clients: '{v}' is not a number from 1 to 100000")
                    })?;
            }
            Long("log-level") => {
                let v = string(&mut p, "--log-level")?;
                cfg.log_level = v.parse().map_err(|_| {
                    format!("--log-level: '{v}' is not one of error, warn, info, debug, trace")
                })?;
            }
            Value(v) => {
                return Err(format!(
                    "unexpected argument '{}'; did you mean --source {0}?",
                    v.to_string_lossy()
                ))
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    Ok(Command::Run(Box::new(cfg)))
}

fn string(p: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let v = p.value().map_err(|_| format!("{flag} needs a value"))?;
    v.into_string()
        .map_err(|v| format!("{flag}: '{}' is not valid UTF-8", v.to_string_lossy()))
}

fn parse_size(v: &str) -> Option<(u16, u16)> {
    let (w, h) = v.split_once(['x', 'X'])?;
    let ok = |n: &str| n.parse::<u16>().ok().filter(|n| (16..=8192).contains(n));
    Some((ok(w)?, ok(h)?))
}

/// `8388608`, `512K`, `8M`, `8MiB`, `64KiB` (binary multiples).
pub fn parse_bytes(v: &str) -> Option<usize> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse(args.iter().map(OsString::from))? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let c = run(&[]).unwrap();
        assert_eq!(c.source, SourceSpec::TestSrc);
        assert_eq!(c.http, "127.0.0.1:8080");
        let c = run(&[
            "--source=tcp-listen:9999",
            "--http",
            "127.0.0.1:0",
            "--max-frame-bytes",
            "512K",
            "--send-timeout",
            "2.5",
            "--size",
            "320x240",
            "-q",
        ])
        .unwrap();
        assert_eq!(c.source, SourceSpec::TcpListen("127.0.0.1:9999".into()));
        assert_eq!(c.max_frame_bytes, 512 * 1024);
        assert_eq!(c.send_timeout, Duration::from_millis(2500));
        assert_eq!((c.width, c.height), (320, 240));
        assert_eq!(c.log_level, log::LevelFilter::Warn);
    }

    #[test]
    fn errors_name_the_flag() {
        for (args, flag) in [
            (&["--fps", "0"][..], "--fps"),
            (&["--size", "10x10"][..], "--size"),
            (&["--source", "bogus"][..], "--source"),
            (&["--http", "nonsense"][..], "--http"),
            (&["--max-frame-bytes", "3Q"][..], "--max-frame-bytes"),
            (&["--send-timeout"][..], "--send-timeout"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(flag), "{e}");
        }
        assert!(run(&["--nope"]).is_err());
        assert!(run(&["stray"]).unwrap_err().contains("stray"));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("8M"), Some(8 << 20));
        assert_eq!(parse_bytes("64KiB"), Some(64 << 10));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("x"), None);
    }
}
