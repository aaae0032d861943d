//! mjpeg-bench: load and latency measurement for any MJPEG-over-HTTP server.
//!
//! An upstream writes real JPEG frames on absolute deadlines, each carrying its sequence number
//! and send time in a COM segment; client threads of several kinds read the server's stream,
//! parse parts and record per-frame latency (receive-complete − send), gaps, duplicates and
//! invalid JPEGs; the server's CPU, RSS and threads are read from /proc. Everything runs on
//! 127.0.0.1 and every loop is bounded by the run's duration.
//!
//! `scenario NAME` runs one of the README's scenarios end to end (it starts the server itself:
//! mjpeg-relay, or the naive forwarder this tool also contains, or the raw-ceiling sender).
//! `load` runs the upstream and clients against a server you started. See `--help`.

mod args;
mod client;
mod procfs;
mod run;
mod scenario;
mod servers;
mod upstream;

use crate::args::Args;
use crate::run::{parse_load, run_load, table_header};
use crate::servers::{naive_server, raw_server, toy_server};

const HELP: &str = "\
mjpeg-bench: measure liveness and scale of an MJPEG-over-HTTP server (loopback only).

USAGE:
    mjpeg-bench scenario NAME [--server relay|naive|toy] [--duration S] [--relay-bin PATH]
        NAME: live | fanout | raw | churn | big | smoke | link | hop | mux | pi | transcode
        --query Q: the viewers ask for /stream?Q (e.g. width=320, size=auto)
        --relay-bins A,B --pairs N: the scenario N times with each relay build in turn
        toy: a minimal relay built in (newest frame per client thread, TCP_NOTSENT_LOWAT,
        one write_all per frame), the baseline for the relay's cost per viewer
    mjpeg-bench scenario fanout [--clients 500,1000] [--servers relay,toy] [--pairs 3]
        [--frame-bytes 50000] [--duration S]
        the servers in turn (A B A B …); server CPU per delivered GB and per delivered frame
    mjpeg-bench scenario link [--rate 2mbit] [--queue 100] [--frame-bytes 20000] [--size WxH]
        [--servers relay,relay-nobound,relay-auto,naive] [--duration S]
        one viewer on a shaped link: a private network namespace (entered through unshare(1),
        as root or with a user namespace) whose loopback has MTU 1500 and an htb class at
        --rate with a --queue packet pfifo on the relay's HTTP port; relay-nobound is the relay
        with its in-flight bound switched off, relay-auto its viewer asking for ?size=auto
        (use --frame-bytes 0: padding is a comment, and a smaller size keeps comments)
    mjpeg-bench scenario mux [--cameras 16] [--fps 15] [--frame-bytes 5000] [--clients-n 20]
        [--duration S]
        dashboards on /mux, carrying every camera, then a quarter each: relay CPU, context
        switches per second (wake-ups) and parts received per second
    mjpeg-bench scenario pi [--cpu-share 0.3] [--memory-mb 64] [--cameras 4] [--viewers 10]
        [--fps 15] [--duration S]
        a Raspberry Pi's budget: the relay in a cgroup (v2, else v1; else taskset + prlimit)
        of that share of one core and memory, 4 cameras 640x480, 10 full-size viewers and one
        320 px viewer each, one /mux dashboard: frames/s and lag per group, CPU, peak RSS,
        OOM kills (as root)
    mjpeg-bench scenario transcode [--frames FILE.mjpeg] [--pairs N]
    mjpeg-bench scenario auto-matrix [--rates 0.3,1,2,10,100,0] [--rtts 0,50,150]
        [--acks quick,delayed] [--auto-seconds 15]: ?size=auto against the fixed sizes on
        each link (as root: TUN devices in network namespaces); 0 is unshaped
        CPU per frame of a smaller size, the relay's code vs ffmpeg on the same frames
    mjpeg-bench load --url http://127.0.0.1:PORT/stream --push 127.0.0.1:PORT [OPTIONS]
    mjpeg-bench naive-server --upstream 127.0.0.1:PORT --http 127.0.0.1:PORT
    mjpeg-bench raw-server --http 127.0.0.1:PORT --frame-bytes N
    mjpeg-bench toy-server --upstream 127.0.0.1:PORT --http 127.0.0.1:PORT

LOAD OPTIONS:
    --url URL            the server's stream URL (loopback)
    --push ADDR          connect to ADDR and push multipart frames (gstreamer tcpclientsink style)
    --listen ADDR        serve the frames to whoever connects to ADDR over plain TCP
    --serve-http ADDR    serve the frames over HTTP as multipart/x-mixed-replace
    --fps N              frames per second [30]
    --size WxH           picture size of the JPEG [640x480]
    --frame-bytes N      pad each frame with a COM segment to this size [20000]
    --fast N --slow N --stalled N --churn PER_SEC   clients of each kind [1 0 0 0]
    --slow-rate BYTES/S  throughput of slow clients [51200]; their SO_RCVBUF is 16 KiB
    --duration S         seconds [10]
    --pid PID            the server process, for CPU, RSS and threads
    --label TEXT         the first column of the report
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = || Args::parse(args.get(1..).unwrap_or_default());
    let result = match args.first().map(String::as_str) {
        Some("scenario") => rest().and_then(|a| scenario::scenario(&a)),
        Some("load") => rest().and_then(|a| parse_load(&a)).map(|cfg| {
            let report = run_load(&cfg, None);
            println!("{}", table_header());
            print!("{}", report.rows(&cfg.label));
        }),
        Some("naive-server") => rest().and_then(|a| naive_server(&a)),
        Some("raw-server") => rest().and_then(|a| raw_server(&a)),
        Some("toy-server") => rest().and_then(|a| toy_server(&a)),
        Some("-h") | Some("--help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command '{other}'; see --help")),
    };
    if let Err(e) = result {
        eprintln!("mjpeg-bench: {e}");
        std::process::exit(2);
    }
}
