//! Command line: flags to a [`Config`], and the `--help` text.
//!
//! Parsing is strict (an unknown flag or a bad value is an error, exit code 2) because a camera
//! server usually starts unattended: better to refuse at start-up than to run misconfigured.

use crate::source::SourceSpec;
use std::ffi::OsString;
use std::time::Duration;

/// One stream to serve: from `--source` (named `default`) or `--stream NAME=SPEC`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub name: String,
    pub source: SourceSpec,
    /// The spec as given, password redacted, for `/status` and logs.
    pub source_text: String,
    /// `--fallback` sources, in order, each with its redacted text.
    pub fallbacks: Vec<(SourceSpec, String)>,
    /// `--on-demand`: the LINGER after the last viewer leaves; `None`: always running.
    pub on_demand: Option<Duration>,
}

/// Everything the command line sets.
#[derive(Debug, Clone)]
pub struct Config {
    /// At least one; exactly one unless `named`.
    pub streams: Vec<StreamConfig>,
    /// Streams came from `--stream NAME=SPEC`: served under `/NAME/`. Otherwise the single
    /// stream is at the plain `/stream`, `/snapshot` paths.
    pub named: bool,
    pub http: String,
    pub fps: f64,
    pub width: u16,
    pub height: u16,
    pub max_frame_bytes: usize,
    /// `--max-pixels`: the largest picture a smaller size (or a sized snapshot or clip) may
    /// decode; a larger one is served at its own size only.
    pub max_pixels: usize,
    pub send_timeout: Duration,
    pub max_clients: usize,
    /// `--max-clients-per-ip`; `None`: half of `max_clients` (see [`Config::max_clients_per_ip`]).
    pub max_per_ip: Option<usize>,
    pub no_signal_after: Duration,
    pub source_timeout: Duration,
    /// `--warmup N`: frames discarded at each start of a source.
    pub warmup: u32,
    /// `--history` and `--history-bytes`: what each stream keeps of its last seconds.
    pub history: crate::history::Limits,
    /// `USER:PASS` for HTTP Basic, from `--auth` or `--auth-file`.
    pub auth: Option<String>,
    pub token: Option<String>,
    /// `--status-details`: source specs and viewer addresses in `/status` without a login.
    pub status_details: bool,
    /// `--tls-cert` and `--tls-key`, both or neither.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub allow_origin: Option<String>,
    /// `--allow-host`: names accepted in `Host` without authentication (DNS rebinding).
    pub allow_hosts: Vec<String>,
    pub static_dir: Option<std::path::PathBuf>,
    pub header_timeout: Duration,
    pub log_level: log::LevelFilter,
    /// Things worth a log line once logging is set up (parsing happens before).
    pub notes: Vec<String>,
    /// `[[user]]`s of `--config`: each sees the streams their patterns name.
    pub users: Vec<crate::users::User>,
    /// `[signing] key_file`s of `--config`: the first signs links, each is accepted.
    pub signing_keys: Vec<Vec<u8>>,
    /// `--config FILE`, read again on SIGHUP.
    pub config_file: Option<std::path::PathBuf>,
    /// The command line as given (without the program name): SIGHUP parses it again with the
    /// file read anew, so flags keep winning over the file.
    pub args: Vec<OsString>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            streams: vec![StreamConfig {
                name: "default".into(),
                source: SourceSpec::TestSrc,
                source_text: "testsrc".into(),
                fallbacks: Vec::new(),
                on_demand: None,
            }],
            named: false,
            http: "127.0.0.1:8080".into(),
            fps: 15.0,
            width: 640,
            height: 480,
            max_frame_bytes: 8 << 20,
            max_pixels: DEFAULT_MAX_PIXELS,
            send_timeout: Duration::from_secs(10),
            max_clients: 1000,
            max_per_ip: None,
            no_signal_after: Duration::from_secs(2),
            source_timeout: Duration::from_secs(5),
            history: crate::history::Limits::DEFAULT,
            warmup: 0,
            auth: None,
            token: None,
            status_details: false,
            tls: None,
            allow_origin: None,
            allow_hosts: Vec::new(),
            static_dir: None,
            header_timeout: crate::http::head::HEAD_TIMEOUT,
            log_level: log::LevelFilter::Info,
            notes: Vec::new(),
            users: Vec::new(),
            signing_keys: Vec::new(),
            config_file: None,
            args: Vec::new(),
        }
    }
}

impl Config {
    /// Connections one address may hold: `--max-clients-per-ip`, by default half of
    /// `--max-clients`, so one host that opens streams and never reads cannot take every
    /// slot, while a household or office behind one NAT address still fits hundreds.
    pub fn max_clients_per_ip(&self) -> usize {
        self.max_per_ip
            .unwrap_or((self.max_clients / 2).max(1))
            .min(self.max_clients)
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    /// `mjpeg-relay sign …`: print a signed link.
    Sign(SignRequest),
    /// `mjpeg-relay sign --help`.
    SignHelp,
    Help,
    Version,
}

/// `mjpeg-relay sign --config FILE --stream NAME --ttl TTL [--width N] [--height N] [--fps N]
/// [--size auto] [--max-viewers N] [--path stream|snapshot|clip] [--base URL]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignRequest {
    pub config: std::path::PathBuf,
    pub stream: Option<String>,
    pub ttl_secs: u64,
    /// `(name, value)` parameters the link carries, in this order.
    pub params: Vec<(&'static str, String)>,
    /// `stream`, `snapshot` or `clip`.
    pub endpoint: String,
    /// `http://HOST:PORT`; by default the config's `http` address.
    pub base: Option<String>,
}

pub const HELP: &str = "\
mjpeg-relay: relay a live MJPEG stream to many HTTP clients, always live.

Slow clients skip frames instead of falling behind; every buffer between the camera and a
viewer is bounded, including the kernel's socket send buffer.

USAGE:
    mjpeg-relay [OPTIONS]
    mjpeg-relay --config FILE [OPTIONS]
    mjpeg-relay sign --config FILE --stream NAME --ttl TTL [--width N] [--fps N] ...

With no options it serves a built-in test pattern at http://127.0.0.1:8080/

OPTIONS:
    --config FILE           Settings from a TOML file: every flag as a key (max_clients = 200),
                            each stream a [[stream]] table, users who see only their streams
                            ([[user]]), a key for signed links ([signing]); see docs/access.md.
                            Flags given here win. SIGHUP reads it again
    --source SPEC           Where frames come from [default: testsrc]
                              testsrc               built-in moving test pattern
                              tcp-listen:HOST:PORT  accept an upstream (gstreamer tcpclientsink);
                                                    a bare PORT means 127.0.0.1:PORT
                              tcp:HOST:PORT         connect to an upstream (tcpserversink)
                              unix:PATH             connect to a Unix socket
                              http://[USER:PASS@]HOST[:PORT]/PATH
                                                    pull MJPEG over HTTP (IP camera, another relay)
                              exec:COMMAND          run sh -c COMMAND, read its stdout; restarted
                                                    when it exits, stopped with the relay
                              file:PATH             replay a recording or a directory of .jpg
                                                    files at --fps, looping
                              stdin, -              MJPEG on standard input
    --stream NAME=SPEC      Serve several streams at /NAME/stream, /NAME/snapshot (repeatable;
                            NAME: letters, digits, - and _). Replaces --source.
    --fallback SPEC         Feed the stream from SPEC while the source is lost, and go back
                            when it returns (repeatable, tried in order; any source kind).
                            With --stream: --fallback NAME=SPEC
    --on-demand[=LINGER]    Run each source only while someone watches (a viewer, a /mux page,
                            a /snapshot waiting), and stop it LINGER seconds after the last one
                            left [default LINGER: 10]; --on-demand=NAME or NAME=LINGER for one
                            stream. Not for tcp-listen: or stdin (the sender decides)
    --no-signal-after SECS  Show viewers a NO SIGNAL picture after this long without a frame;
                            0 turns it off [default: 2]
    --source-timeout SECS   Drop and reconnect an upstream silent for this long [default: 5]
    --http HOST:PORT        Where to serve HTTP [default: 127.0.0.1:8080]; a bare PORT means
                            127.0.0.1:PORT; unix:PATH serves on a Unix socket (for a reverse
                            proxy on the same host)
    --auth USER:PASS        Require HTTP Basic auth on every endpoint
    --auth-file PATH        The same, USER:PASS read from a file (keeps it out of ps): the
                            first line that is not empty or a # comment; none means no login
    --token TOKEN           Require ?token=TOKEN or Authorization: Bearer TOKEN (or Basic, if
                            --auth is also set) on every endpoint. At least 8 characters,
                            no spaces, & or #
    --token-file PATH       The same, the token read from a file (keeps it out of ps): the
                            first line that is not empty or a # comment
    --status-details        Show each source's spec (secrets redacted) and each viewer's
                            address and User-Agent in /status without --auth or --token
                            (with a login they are always shown)
    --tls-cert FILE         Serve HTTPS: the certificate chain, PEM (leaf first), e.g. an ACME
                            client's fullchain.pem; read again when it changes
    --tls-key FILE          Its private key, PEM; read again when it changes
    --allow-origin ORIGIN   Send Access-Control-Allow-Origin: ORIGIN (CORS), e.g. * or
                            https://dashboard.example
    --allow-host NAME       Without --auth or --token, requests must name the relay by IP
                            address or localhost in Host (against DNS rebinding); also
                            accept NAME, e.g. camera.local (repeatable)
    --static DIR            Serve DIR at / (the viewer moves to /viewer; dotfiles never)
    --fps N                 testsrc and file: frame rate, and how often an http:// URL that
                            serves single pictures (a snapshot URL) is polled [default: 15]
    --size WxH              testsrc frame size [default: 640x480]
    --max-frame-bytes N     Drop frames larger than this; K/M suffixes [default: 8M]
    --max-pixels N|WxH      The largest picture smaller sizes may decode (about 3 bytes a
                            pixel while it is made smaller); K/M suffixes count thousands
                            and millions [default: 4096x3072, 12.6 M: 4K and 12 MP cameras]
    --warmup N              Discard the first N frames after every start of a camera or
                            connection to it (exposure settling), for every viewer [default: 0]
    --history SECS          Keep each stream's last SECS seconds in memory, for
                            /snapshot?ago= and /clip; 0 keeps none [default: 30]
    --history-bytes N       ... but at most N bytes per stream; K/M suffixes [default: 8M]
    --send-timeout SECS     Disconnect a client that cannot take a frame in this time [default: 10]
    --max-clients N         Concurrent HTTP connections; more get 503 [default: 1000]
    --max-clients-per-ip N  Concurrent connections from one address; more get 503 [default:
                            half of --max-clients]. Behind a proxy on the same host over TCP,
                            every viewer has its address: set it to --max-clients, or use unix:
    --header-timeout SECS   Time a client has to send its whole request head [default: 10]
    --log-level LEVEL       error, warn, info, debug or trace [default: info]
    -v, --verbose           Same as --log-level debug
    -q, --quiet             Same as --log-level warn
    -h, --help              Print this help
    -V, --version           Print the version

ENDPOINTS:
    /            viewer page          /stream    multipart/x-mixed-replace MJPEG
    /snapshot    newest frame (JPEG)  /status    JSON: source state, rates, clients
    /metrics     Prometheus metrics   /viewer    the viewer page, always
    /stream?fps=N caps one client's frame rate; ?width=N (or ?height=N) a smaller size of
    any frame URL, ?size=auto the size this viewer's link carries; ?rewind=SECS replays the
    last SECS first. /snapshot?ago=SECS the frame from SECS ago, ?fresh=1 the first frame
    after the request; /clip?last=SECS (or ?from=T&to=T) the last seconds as an AVI file
    (&format=multipart: as MJPEG). Also answered, for existing configurations:
    /?action=stream /?action=snapshot (mjpg-streamer), /state (ustreamer), /stream.mjpeg,
    /api/stream.mjpeg?src=NAME /api/frame.jpeg?src=NAME (go2rtc)
    With --stream: / shows every stream live (one /mux connection); /NAME/ /NAME/stream
    /NAME/snapshot /NAME/status; /mux?streams=a,b (or *) several streams on one connection
    (&framing=octet: as application/octet-stream, for fetch() in Safari). A stream URL opened
    in a browser's address bar gets a page showing it live (?page=0: the raw stream)

EXAMPLES:
    # The test pattern, no camera needed:
    mjpeg-relay

    # A camera through gstreamer, pushing into the relay:
    mjpeg-relay --source tcp-listen:127.0.0.1:9999 &
    gst-launch-1.0 v4l2src device=/dev/video0 ! video/x-raw,framerate=15/1,width=640,height=480 \\
      ! jpegenc ! multipartmux boundary=spionisto ! tcpclientsink host=127.0.0.1 port=9999

    # The same through a pipe:
    gst-launch-1.0 -q v4l2src ! jpegenc ! multipartmux ! fdsink fd=1 | mjpeg-relay --source stdin

    # The relay starts the camera command itself, and restarts it if it dies:
    mjpeg-relay --source 'exec:ffmpeg -loglevel error -f v4l2 -i /dev/video0 -c:v mjpeg -f mjpeg -'

    # Two cameras: an IP camera and a chained relay:
    mjpeg-relay --stream door=http://admin:pw@10.0.0.20/video.cgi \
                --stream yard=http://origin-host:8080/stream

    # ffmpeg writing raw JPEGs to the pipe, served on all interfaces:
    ffmpeg -f v4l2 -i /dev/video0 -c:v mjpeg -f mjpeg - | mjpeg-relay --source - --http 0.0.0.0:8080

SIGNED LINKS:
    mjpeg-relay sign --config FILE --stream NAME --ttl TTL prints a URL that opens that stream
    with no login until TTL (90, 15m, 1h, 7d) has passed. Options: --path snapshot or clip;
    the link's own --width, --height, --fps, --size or --quality; at most --max-viewers N at
    once; --base URL, the address viewers use. Tampered or expired: 403. (docs/access.md)

EXIT CODES:
    0  stopped by SIGINT or SIGTERM     1  could not start (e.g. address in use)
    2  bad command line                 130  a second SIGINT while stopping
";

/// Parses the command line (without the program name): `sign …`, or the flags, with
/// `--config FILE`'s keys before them (so a flag given wins over the file's key).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let args: Vec<OsString> = args.into_iter().collect();
    if args.first().is_some_and(|a| a == "sign") {
        if args[1..].iter().any(|a| a == "-h" || a == "--help") {
            return Ok(Command::SignHelp);
        }
        return parse_sign(&args[1..]).map(Command::Sign);
    }
    let (config_file, given) = take_config_flag(&args)?;
    let Some(path) = config_file else {
        let mut cmd = parse_flags(given)?;
        if let Command::Run(cfg) = &mut cmd {
            cfg.args = args;
        }
        return Ok(cmd);
    };
    let file = crate::config_file::read(&path)?;
    let mut merged: Vec<OsString> = without_overridden(&file.args, &given);
    merged.extend(given);
    let mut cmd =
        parse_flags(merged).map_err(|e| format!("{e} (with --config {})", path.display()))?;
    if let Command::Run(cfg) = &mut cmd {
        cfg.notes.extend(file.notes);
        for u in &file.users {
            for p in &u.streams {
                if !cfg
                    .streams
                    .iter()
                    .any(|s| crate::users::pattern_matches(p, &s.name))
                {
                    cfg.notes.push(format!(
                        "--config {}: user '{}': '{p}' matches no stream (yet)",
                        path.display(),
                        u.name
                    ));
                }
            }
        }
        cfg.users = file.users;
        cfg.signing_keys = file.keys;
        cfg.config_file = Some(path);
        cfg.args = args;
    }
    Ok(cmd)
}

/// `--config FILE` (or `--config=FILE`) out of the command line: the file, and the rest.
fn take_config_flag(
    args: &[OsString],
) -> Result<(Option<std::path::PathBuf>, Vec<OsString>), String> {
    let mut file = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let text = a.to_string_lossy();
        let value = if text == "--config" {
            Some(
                it.next()
                    .cloned()
                    .ok_or("--config needs a value: the path of a TOML file")?,
            )
        } else {
            text.strip_prefix("--config=").map(OsString::from)
        };
        match value {
            Some(v) if file.is_some() => {
                return Err(format!("--config given twice ({})", v.to_string_lossy()))
            }
            Some(v) => file = Some(std::path::PathBuf::from(v)),
            None => rest.push(a.clone()),
        }
        if text == "--" {
            rest.extend(it.cloned());
            break;
        }
    }
    Ok((file, rest))
}

/// Flags that stand for each other: the command line giving one replaces the file's others.
const FLAG_GROUPS: &[&[&str]] = &[
    &["source", "stream", "fallback", "on-demand"],
    &["log-level", "verbose", "quiet"],
    &["auth", "auth-file"],
    &["token", "token-file"],
    &["tls-cert", "tls-key"],
];

/// The file's arguments less those the command line gives itself.
fn without_overridden(file: &[(String, OsString)], given: &[OsString]) -> Vec<OsString> {
    let mut named: Vec<String> = given
        .iter()
        .filter_map(|a| {
            let a = a.to_str()?;
            match a {
                "-v" => Some("verbose".to_string()),
                "-q" => Some("quiet".to_string()),
                _ => Some(a.strip_prefix("--")?.split('=').next()?.to_string()),
            }
        })
        .collect();
    // The stream flags are replaced only when the command line names the streams: a lone
    // `--on-demand` or `--fallback` there adds to the file's streams' settings.
    const STREAM_FLAGS: &[&str] = FLAG_GROUPS[0];
    let replaces_streams = named.iter().any(|n| n == "source" || n == "stream");
    for group in &FLAG_GROUPS[1..] {
        if named.iter().any(|n| group.contains(&n.as_str())) {
            named.extend(group.iter().map(|g| g.to_string()));
        }
    }
    file.iter()
        .filter(|(flag, _)| {
            if STREAM_FLAGS.contains(&flag.as_str()) {
                !replaces_streams
            } else {
                !named.contains(flag)
            }
        })
        .map(|(_, arg)| arg.clone())
        .collect()
}

/// `mjpeg-relay sign …` (without `sign`).
fn parse_sign(args: &[OsString]) -> Result<SignRequest, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args.iter().cloned());
    let (mut config, mut stream, mut ttl, mut base) = (None, None, None, None);
    let mut endpoint = "stream".to_string();
    let mut params = Vec::new();
    while let Some(arg) = p.next().map_err(|e| format!("sign: {e}"))? {
        match arg {
            Long("config") => config = Some(std::path::PathBuf::from(string(&mut p, "--config")?)),
            Long("stream") => stream = Some(string(&mut p, "--stream")?),
            Long("ttl") => {
                let v = string(&mut p, "--ttl")?;
                ttl = Some(crate::signing::parse_ttl(&v).map_err(|e| format!("sign --ttl: {e}"))?);
            }
            Long("path") => {
                endpoint = string(&mut p, "--path")?;
                if !["stream", "snapshot", "clip"].contains(&endpoint.as_str()) {
                    return Err(format!(
                        "sign --path: '{endpoint}' is not stream, snapshot or clip"
                    ));
                }
            }
            Long("base") => {
                let v = string(&mut p, "--base")?;
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(format!(
                        "sign --base: '{v}' is not an http:// or https:// URL"
                    ));
                }
                base = Some(v.trim_end_matches('/').to_string());
            }
            Long(name @ ("width" | "height" | "fps" | "max-viewers" | "size" | "quality")) => {
                let name = name.to_string();
                let key: &'static str = match name.as_str() {
                    "width" => "width",
                    "height" => "height",
                    "fps" => "fps",
                    "size" => "size",
                    "quality" => "quality",
                    _ => crate::signing::MAX_VIEWERS,
                };
                let v = string(&mut p, &format!("--{name}"))?;
                let ok = if key == "size" {
                    v == "auto"
                } else {
                    v.parse::<f64>().is_ok_and(|n| n > 0.0 && n < 1e6)
                };
                if !ok {
                    return Err(format!(
                        "sign --{name}: '{v}' is not a positive number{}",
                        if key == "size" {
                            " (only 'auto' for --size)"
                        } else {
                            ""
                        }
                    ));
                }
                params.push((key, v));
            }
            _ => return Err(format!("sign: {}\n{SIGN_USAGE}", arg.unexpected())),
        }
    }
    Ok(SignRequest {
        config: config.ok_or(format!(
            "sign: --config FILE is needed (its [signing] key)\n{SIGN_USAGE}"
        ))?,
        stream,
        ttl_secs: ttl.ok_or(format!(
            "sign: --ttl is needed, e.g. --ttl 1h\n{SIGN_USAGE}"
        ))?,
        params,
        endpoint,
        base,
    })
}

/// `mjpeg-relay sign`: the signed URL for `req`, from its config file's key, streams and
/// address.
pub fn sign_link(req: &SignRequest) -> Result<String, String> {
    let args = vec![
        OsString::from("--config"),
        req.config.clone().into_os_string(),
    ];
    let cfg = match parse(args)? {
        Command::Run(cfg) => cfg,
        _ => return Err("the config file did not make a configuration".into()),
    };
    if cfg.signing_keys.is_empty() {
        return Err(format!(
            "{} has no [signing] key_file: links need a key (make one with \
             'openssl rand -hex 32 > signing.key')",
            req.config.display()
        ));
    }
    let names: Vec<&str> = cfg.streams.iter().map(|s| s.name.as_str()).collect();
    let path = match (&req.stream, cfg.named) {
        (Some(n), true) if names.contains(&n.as_str()) => format!("/{n}/{}", req.endpoint),
        (None, false) => format!("/{}", req.endpoint),
        (Some(n), false) if n == "default" => format!("/{}", req.endpoint),
        (None, true) => {
            return Err(format!(
                "--stream NAME is needed; the streams are {}",
                names.join(", ")
            ))
        }
        (Some(n), _) => {
            return Err(format!(
                "no stream named '{n}' in {}; the streams are {}",
                req.config.display(),
                names.join(", ")
            ))
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970")?
        .as_secs();
    let keys = crate::signing::Keys::new(&cfg.signing_keys);
    let params: Vec<(&str, String)> = req.params.iter().map(|(k, v)| (*k, v.clone())).collect();
    let link = keys
        .sign(&path, &params, now + req.ttl_secs)
        .ok_or("no signing key")?;
    let base = req.base.clone().unwrap_or_else(|| {
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", cfg.http)
    });
    Ok(format!("{base}{link}"))
}

pub const SIGN_USAGE: &str = "\
USAGE:
    mjpeg-relay sign --config FILE --stream NAME --ttl TTL [--width N | --height N]
                     [--fps N] [--size auto] [--quality N] [--max-viewers N]
                     [--path stream|snapshot|clip] [--base URL]

Prints a URL that opens one stream with these parameters, with no login, until TTL (seconds,
or with s, m, h or d) has passed. Signed with the first [signing] key_file of FILE.
";

fn parse_flags(args: Vec<OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut cfg = Config::default();
    let mut source: Option<StreamConfig> = None;
    let mut named: Vec<StreamConfig> = Vec::new();
    let mut fallbacks: Vec<String> = Vec::new();
    // `--on-demand[=[NAME=]LINGER|NAME]`, resolved once every stream is known.
    let mut on_demand: Vec<Option<String>> = Vec::new();
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut p = lexopt::Parser::from_args(args);
    // `--source exec:ffmpeg -f lavfi …` unquoted: the shell split the command, and the first
    // of its own options is ours to refuse. Any stray argument after an `exec:` value says so.
    let mut exec_given: Option<String> = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let stray = |msg: String| match &exec_given {
            Some(flag) => format!(
                "{msg}\nIf it belongs to the exec: command: a command with spaces must be one \
                 quoted argument, e.g. {flag}'exec:ffmpeg -f lavfi -i testsrc -f mjpeg -'"
            ),
            None => msg,
        };
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('v') | Long("verbose") => cfg.log_level = log::LevelFilter::Debug,
            Short('q') | Long("quiet") => cfg.log_level = log::LevelFilter::Warn,
            Long("source") => {
                let v = string(&mut p, "--source")?;
                if v.starts_with("exec:") {
                    exec_given = Some("--source ".into());
                }
                if source.is_some() {
                    return Err("--source given twice; use --stream NAME=SPEC for several".into());
                }
                source = Some(StreamConfig {
                    name: "default".into(),
                    source: SourceSpec::parse(&v).map_err(|e| format!("--source: {e}"))?,
                    source_text: crate::source::redact(&v),
                    fallbacks: Vec::new(),
                    on_demand: None,
                });
            }
            Long("fallback") => {
                let v = string(&mut p, "--fallback")?;
                if v.contains("exec:") {
                    exec_given = Some("--fallback ".into());
                }
                fallbacks.push(v);
            }
            Long("on-demand") => on_demand.push(
                p.optional_value()
                    .map(|v| {
                        v.into_string()
                            .map_err(|_| "--on-demand: not UTF-8".to_string())
                    })
                    .transpose()?,
            ),
            Long("stream") => {
                let v = string(&mut p, "--stream")?;
                if let Some((name, _)) = v.split_once("=exec:") {
                    exec_given = Some(format!("--stream {name}="));
                }
                // Error messages echo the value redacted: it may hold a camera's password.
                let shown = crate::source::redact(&v);
                let (name, spec) = v.split_once('=').ok_or_else(|| {
                    format!(
                        "--stream: '{shown}' is not NAME=SPEC, e.g. --stream door=tcp:10.0.0.5:5000"
                    )
                })?;
                crate::hub::check_name(name).map_err(|e| format!("--stream {shown}: {e}"))?;
                if named.iter().any(|s| s.name == name) {
                    return Err(format!("--stream: the name '{name}' is used twice"));
                }
                let source =
                    SourceSpec::parse(spec).map_err(|e| format!("--stream {name}=...: {e}"))?;
                named.push(StreamConfig {
                    name: name.to_string(),
                    source,
                    source_text: crate::source::redact(spec),
                    fallbacks: Vec::new(),
                    on_demand: None,
                });
            }
            Long("no-signal-after") => {
                cfg.no_signal_after = seconds(&mut p, "--no-signal-after", 0.0, 3600.0)?;
            }
            Long("header-timeout") => {
                cfg.header_timeout = seconds(&mut p, "--header-timeout", 0.1, 600.0)?;
            }
            Long("source-timeout") => {
                cfg.source_timeout = seconds(&mut p, "--source-timeout", 0.5, 3600.0)?;
            }
            Long("http") => {
                let v = string(&mut p, "--http")?;
                // A bare port means loopback, as for tcp-listen: the safe default.
                let v = if v.parse::<u16>().is_ok() {
                    format!("127.0.0.1:{v}")
                } else {
                    v
                };
                let ok = match v.strip_prefix("unix:") {
                    Some(path) => !path.is_empty(),
                    None => std::net::ToSocketAddrs::to_socket_addrs(&v.as_str()).is_ok(),
                };
                if !ok {
                    return Err(format!("--http: '{v}' is not HOST:PORT or unix:PATH"));
                }
                cfg.http = v;
            }
            Long("auth") => {
                let v = string(&mut p, "--auth")?;
                crate::auth::check_user_pass(&v).map_err(|e| format!("--auth: {e}"))?;
                cfg.auth = Some(v);
            }
            Long("auth-file") => {
                let v = string(&mut p, "--auth-file")?;
                let up = crate::auth::read_auth_file(std::path::Path::new(&v))
                    .map_err(|e| format!("--auth-file: {e}"))?;
                if up.is_none() {
                    cfg.notes.push(format!(
                        "--auth-file {v} holds no USER:PASS line (only comments): no login required"
                    ));
                }
                cfg.auth = up;
            }
            Long("token") => {
                let v = string(&mut p, "--token")?;
                check_token(&v).map_err(|e| format!("--token: {e}"))?;
                cfg.token = Some(v);
            }
            Long("token-file") => {
                let v = string(&mut p, "--token-file")?;
                let text = std::fs::read_to_string(&v)
                    .map_err(|e| format!("--token-file: cannot read {v}: {e}"))?;
                let token = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .ok_or_else(|| format!("--token-file: {v} holds no token line"))?;
                check_token(token).map_err(|e| format!("--token-file {v}: {e}"))?;
                cfg.token = Some(token.to_string());
            }
            Long("status-details") => cfg.status_details = true,
            Long("tls-cert") => {
                tls_cert = Some(std::path::PathBuf::from(string(&mut p, "--tls-cert")?))
            }
            Long("tls-key") => {
                tls_key = Some(std::path::PathBuf::from(string(&mut p, "--tls-key")?))
            }
            Long("allow-origin") => {
                let v = string(&mut p, "--allow-origin")?;
                if v.is_empty() || v.contains(['\r', '\n']) {
                    return Err(
                        "--allow-origin: expected an origin such as https://host or *".into(),
                    );
                }
                cfg.allow_origin = Some(v);
            }
            Long("allow-host") => {
                let v = string(&mut p, "--allow-host")?;
                let ok = !v.is_empty()
                    && v.len() <= 253
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !ok {
                    return Err(format!(
                        "--allow-host: '{v}' is not a host name (letters, digits, - and .)"
                    ));
                }
                cfg.allow_hosts.push(v);
            }
            Long("static") => {
                let v = string(&mut p, "--static")?;
                let dir = std::path::Path::new(&v)
                    .canonicalize()
                    .ok()
                    .filter(|d| d.is_dir())
                    .ok_or_else(|| format!("--static: '{v}' is not a directory"))?;
                cfg.static_dir = Some(dir);
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
            Long("max-pixels") => {
                let v = string(&mut p, "--max-pixels")?;
                cfg.max_pixels = parse_pixels(&v)
                    .filter(|n| (MIN_PIXELS..=MAX_PIXELS).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "--max-pixels: '{v}' is not a number of pixels (e.g. 12M) or \
                             WIDTHxHEIGHT, from 64K to 268M"
                        )
                    })?;
            }
            Long("warmup") => {
                let v = string(&mut p, "--warmup")?;
                cfg.warmup = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 1000)
                    .ok_or_else(|| format!("--warmup: '{v}' is not a number from 0 to 1000"))?;
            }
            Long("history") => {
                cfg.history.max_age = seconds(&mut p, "--history", 0.0, 86_400.0)?;
            }
            Long("history-bytes") => {
                let v = string(&mut p, "--history-bytes")?;
                cfg.history.max_bytes =
                    parse_bytes(&v).filter(|&n| n <= 1 << 30).ok_or_else(|| {
                        format!("--history-bytes: '{v}' is not a size from 0 to 1024M")
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
                    .filter(|n| (1..=MAX_CLIENTS).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "--max-clients: '{v}' is not a number from 1 to {MAX_CLIENTS}{}",
                            if cfg!(target_pointer_width = "32") {
                                " (a 32-bit build: each client's thread reserves its stack in \
                                 an address space of 3 to 4 GB)"
                            } else {
                                ""
                            }
                        )
                    })?;
            }
            Long("max-clients-per-ip") => {
                let v = string(&mut p, "--max-clients-per-ip")?;
                cfg.max_per_ip = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=100_000).contains(n))
                        .ok_or_else(|| {
                            format!("--max-clients-per-ip: '{v}' is not a number from 1 to 100000")
                        })?,
                );
            }
            Long("log-level") => {
                let v = string(&mut p, "--log-level")?;
                cfg.log_level = v.parse().map_err(|_| {
                    format!("--log-level: '{v}' is not one of error, warn, info, debug, trace")
                })?;
            }
            Value(v) if exec_given.is_some() => {
                return Err(stray(format!(
                    "unexpected argument '{}'",
                    v.to_string_lossy()
                )))
            }
            Value(v) => {
                return Err(format!(
                    "unexpected argument '{}'; did you mean --source {0}?",
                    v.to_string_lossy()
                ))
            }
            Long(flag) => return Err(stray(unknown_flag(flag))),
            _ => return Err(stray(arg.unexpected().to_string())),
        }
    }
    match (source, named.is_empty()) {
        (Some(_), false) => {
            return Err(
                "--source and --stream cannot be combined; name every stream with \
                        --stream NAME=SPEC"
                    .into(),
            )
        }
        (Some(s), true) => cfg.streams = vec![s],
        (None, false) => {
            cfg.streams = named;
            cfg.named = true;
        }
        (None, true) => {}
    }
    // --fallback SPEC for the single stream; --fallback NAME=SPEC with --stream.
    for v in fallbacks {
        let (target, spec) = if cfg.named {
            let (name, spec) = v
                .split_once('=')
                .filter(|(n, _)| cfg.streams.iter().any(|s| s.name == *n))
                .ok_or_else(|| {
                    format!(
                        "--fallback: '{}' is not NAME=SPEC for one of the --stream names",
                        crate::source::redact(&v)
                    )
                })?;
            (cfg.streams.iter_mut().find(|s| s.name == name), spec)
        } else {
            (cfg.streams.first_mut(), v.as_str())
        };
        let source = SourceSpec::parse(spec).map_err(|e| format!("--fallback: {e}"))?;
        if let Some(s) = target {
            s.fallbacks.push((source, crate::source::redact(spec)));
        }
    }
    for v in on_demand {
        apply_on_demand(&mut cfg, v.as_deref())?;
    }
    cfg.tls = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(
                "--tls-cert and --tls-key go together (the certificate chain and its \
                          private key, PEM)"
                    .into(),
            )
        }
    };
    if cfg.tls.is_some() && cfg.http.starts_with("unix:") {
        return Err(
            "--tls-cert: a Unix socket is for a proxy on the same host, which does TLS \
                    itself; serve HTTPS on a TCP address (--http HOST:PORT)"
                .into(),
        );
    }
    let stdin_users = cfg
        .streams
        .iter()
        .flat_map(|s| std::iter::once(&s.source).chain(s.fallbacks.iter().map(|(f, _)| f)))
        .filter(|s| **s == SourceSpec::Stdin)
        .count();
    if stdin_users > 1 {
        return Err("--stream: only one stream can read stdin".into());
    }
    Ok(Command::Run(Box::new(cfg)))
}

/// LINGER when `--on-demand` names none: long enough for a viewer that reloads its page,
/// or a dashboard that reconnects, not to restart the camera.
pub const ON_DEMAND_LINGER: Duration = Duration::from_secs(10);

/// One `--on-demand` (`None`: no value): every stream, or the one it names, runs its source
/// only while watched. Push sources cannot: the sender connects when it wants.
fn apply_on_demand(cfg: &mut Config, v: Option<&str>) -> Result<(), String> {
    let secs = |t: &str| {
        t.parse::<f64>()
            .ok()
            .filter(|s| (0.0..=86_400.0).contains(s))
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("--on-demand: '{t}' is not a LINGER in seconds (0 to 86400)"))
    };
    let (name, linger) = match v {
        None => (None, ON_DEMAND_LINGER),
        Some(v) => match v.split_once('=') {
            Some((n, l)) => (Some(n), secs(l)?),
            None if cfg.streams.iter().any(|s| s.name == v) => (Some(v), ON_DEMAND_LINGER),
            None => (None, secs(v)?),
        },
    };
    let mut matched = false;
    for s in cfg.streams.iter_mut() {
        if name.is_some_and(|n| n != s.name) {
            continue;
        }
        matched = true;
        let push = std::iter::once(&s.source)
            .chain(s.fallbacks.iter().map(|(f, _)| f))
            .find(|k| matches!(k, SourceSpec::TcpListen(_) | SourceSpec::Stdin));
        if let Some(kind) = push {
            let kind = match kind {
                SourceSpec::Stdin => "stdin",
                _ => "tcp-listen:",
            };
            return Err(format!(
                "--on-demand: stream '{}' reads {kind}, which the relay cannot start or stop \
                 (the sender decides when to send); on demand works with tcp:, unix:, http://, \
                 exec:, testsrc and file: (for gstreamer, let the relay run it: \
                 exec:gst-launch-1.0 … ! fdsink fd=1)",
                s.name
            ));
        }
        s.on_demand = Some(linger);
    }
    match (matched, name) {
        (false, Some(n)) => Err(format!(
            "--on-demand: no stream named '{n}' (--on-demand=NAME or NAME=LINGER for one \
             --stream, a LINGER in seconds for all)"
        )),
        _ => Ok(()),
    }
}

/// `--port`: "unknown flag --port; did you mean --http?". Suggests what people coming from
/// other servers type, and otherwise the flag of `--help` closest in spelling.
fn unknown_flag(flag: &str) -> String {
    let flag = flag.split('=').next().unwrap_or(flag);
    let known = help_flags();
    let alias = match flag {
        "port" | "listen" | "bind" | "address" | "host" => Some("http"),
        "input" | "camera" | "url" | "device" | "src" => Some("source"),
        "user" | "password" | "login" | "basic-auth" => Some("auth"),
        "framerate" | "frame-rate" | "rate" => Some("fps"),
        "resolution" | "res" => Some("size"),
        "verbose-level" | "loglevel" | "log" => Some("log-level"),
        _ => None,
    };
    // A flag cut short (`--no-signal`): the one known flag it begins.
    let prefixed: Vec<&String> = known.iter().filter(|k| k.starts_with(flag)).collect();
    let by_prefix = (flag.len() >= 3 && prefixed.len() == 1).then(|| prefixed[0].clone());
    let guess = alias.map(str::to_string).or(by_prefix).or_else(|| {
        known
            .iter()
            .map(|k| (edit_distance(flag, k), k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 4))
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k.clone())
    });
    match guess {
        Some(g) => format!("unknown flag --{flag}; did you mean --{g}?"),
        None => format!("unknown flag --{flag}"),
    }
}

/// The long flags `--help` lists (so the suggestion list cannot drift from it).
pub fn help_flags() -> Vec<String> {
    HELP.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l
                .strip_prefix("-h, ")
                .or(l.strip_prefix("-V, "))
                .or(l.strip_prefix("-v, "))
                .or(l.strip_prefix("-q, "))
                .unwrap_or(l);
            let name = rest.strip_prefix("--")?;
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(name.get(..end)?.to_string())
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// Levenshtein distance; both are short flag names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn check_token(v: &str) -> Result<(), String> {
    if v.len() < 8 || v.contains(|c: char| c.is_whitespace() || c == '&' || c == '#') {
        return Err("use at least 8 characters, without spaces, & or #".into());
    }
    Ok(())
}

fn seconds(p: &mut lexopt::Parser, flag: &str, min: f64, max: f64) -> Result<Duration, String> {
    let v = string(p, flag)?;
    v.parse::<f64>()
        .ok()
        .filter(|s| (min..=max).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{flag}: '{v}' is not seconds between {min} and {max}"))
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

/// The most `--max-clients` a build accepts. Every client has a thread whose stack
/// ([`crate::http::CLIENT_STACK`], 128 KiB, plus a guard page) is reserved in the address
/// space: 100,000 is 12.5 GB, nothing on 64 bits, but a 32-bit program (Raspberry Pi OS 32-bit)
/// has 3 to 4 GB in all, so there 8,192 (about 1 GB of stacks, beside the frames and the
/// heap) is the most that can really be served; more would fail thread by thread at run time.
pub const MAX_CLIENTS: usize = if cfg!(target_pointer_width = "32") {
    8_192
} else {
    100_000
};

/// `8388608`, `512K`, `8M`, `8MiB`, `64KiB` (binary multiples).
/// `--max-pixels` by default: 4K (3840x2160, 4096x2160) and a 12 MP sensor (4056x3040),
/// 38 MB while one is decoded: six sizes at once fit a 32-bit address space many times.
pub const DEFAULT_MAX_PIXELS: usize = 4096 * 3072;
const MIN_PIXELS: usize = 64_000;
const MAX_PIXELS: usize = 16384 * 16384;

/// `12M`, `12000000` or `4096x3072`: a number of pixels (K and M are thousands and millions,
/// as megapixels are counted).
fn parse_pixels(v: &str) -> Option<usize> {
    let v = v.trim();
    if let Some((w, h)) = v.split_once(['x', 'X']) {
        let (w, h): (usize, usize) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
        return w.checked_mul(h);
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1_000,
        "m" | "mp" => 1_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

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
        assert_eq!(c.streams[0].source, SourceSpec::TestSrc);
        assert!(!c.named);
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
        assert_eq!(
            c.streams[0].source,
            SourceSpec::TcpListen("127.0.0.1:9999".into())
        );
        assert_eq!(c.max_frame_bytes, 512 * 1024);
        assert_eq!(c.send_timeout, Duration::from_millis(2500));
        assert_eq!((c.width, c.height), (320, 240));
        assert_eq!(c.log_level, log::LevelFilter::Warn);
        // The pixel limit is its own: a small frame limit leaves it at 4K.
        assert_eq!(c.max_pixels, 4096 * 3072);
        for (v, px) in [
            ("8M", 8_000_000),
            ("1280x1024", 1_310_720),
            ("300000", 300_000),
        ] {
            assert_eq!(run(&["--max-pixels", v]).unwrap().max_pixels, px, "{v}");
        }
    }

    #[test]
    fn errors_name_the_flag() {
        for (args, flag) in [
            (&["--fps", "0"][..], "--fps"),
            (&["--size", "10x10"][..], "--size"),
            (&["--source", "bogus"][..], "--source"),
            (&["--http", "nonsense"][..], "--http"),
            (&["--max-frame-bytes", "3Q"][..], "--max-frame-bytes"),
            (&["--max-pixels", "10"][..], "--max-pixels"),
            (&["--max-pixels", "99999x99999"][..], "--max-pixels"),
            (&["--max-pixels", "3Q"][..], "--max-pixels"),
            (&["--send-timeout"][..], "--send-timeout"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(flag), "{e}");
        }
        assert!(run(&["--nope"]).is_err());
        for (args, want) in [
            (&["--stream", "a b=testsrc"][..], "only letters"),
            (&["--stream", "a/b=testsrc"][..], "only letters"),
            (&["--stream", "=testsrc"][..], "1 to 64"),
            (&["--stream", "cam"][..], "NAME=SPEC"),
            (
                &["--stream", "a=testsrc", "--stream", "a=stdin"][..],
                "twice",
            ),
            (&["--stream", "a=nope"][..], "--stream a="),
            (
                &["--stream", "a=-", "--stream", "b=stdin"][..],
                "one stream",
            ),
            (
                &["--source", "testsrc", "--stream", "a=testsrc"][..],
                "cannot be combined",
            ),
            (&["--no-signal-after", "-1"][..], "--no-signal-after"),
            (&["--source-timeout", "0"][..], "--source-timeout"),
            (&["--auth", "nocolon"][..], "--auth"),
            (&["--auth-file", "/no/such/file"][..], "--auth-file"),
            (&["--token", "short"][..], "--token"),
            (&["--static", "/no/such/dir"][..], "--static"),
            (&["--http", "unix:"][..], "--http"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
        assert!(run(&["stray"]).unwrap_err().contains("stray"));
    }

    #[test]
    fn named_streams() {
        let c = run(&[
            "--stream",
            "door=tcp:10.0.0.5:5000",
            "--stream",
            "yard_2=http://u:secret@cam/v",
            "--no-signal-after",
            "0.5",
        ])
        .unwrap();
        assert!(c.named);
        let names: Vec<_> = c.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["door", "yard_2"]);
        assert_eq!(c.streams[1].source_text, "http://u:***@cam/v");
        assert_eq!(c.no_signal_after, Duration::from_millis(500));
    }

    #[test]
    fn flags_given_win_over_the_config_files_keys() {
        let dir = std::env::temp_dir().join(format!("mjpeg-cli-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(
            &file,
            "http = \"0.0.0.0:9000\"\nmax_clients = 50\nauth = \"op:pw\"\n\
             [[stream]]\nname = \"door\"\nsource = \"testsrc\"\non_demand = 5\n\
             [[stream]]\nname = \"yard\"\nsource = \"testsrc\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        // The file alone.
        let c = run(&["--config", f]).unwrap();
        assert_eq!((c.http.as_str(), c.max_clients), ("0.0.0.0:9000", 50));
        assert_eq!(c.streams.len(), 2);
        assert_eq!(c.streams[0].on_demand, Some(Duration::from_secs(5)));
        assert_eq!(c.auth.as_deref(), Some("op:pw"));
        assert_eq!(c.config_file.as_deref(), Some(file.as_path()));
        // A flag replaces its key; --source replaces every stream of the file; --auth-file
        // stands for --auth.
        let auth = dir.join("auth");
        std::fs::write(&auth, "viewer:other\n").unwrap();
        let c = run(&[
            "--http",
            "127.0.0.1:7000",
            "--config",
            f,
            "--source",
            "testsrc",
            "--auth-file",
            auth.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!((c.http.as_str(), c.max_clients), ("127.0.0.1:7000", 50));
        assert!(!c.named && c.streams.len() == 1);
        assert_eq!(c.auth.as_deref(), Some("viewer:other"));
        // A lone --on-demand adds to the file's streams.
        let c = run(&["--config", f, "--on-demand=yard=3"]).unwrap();
        assert_eq!(c.streams[1].on_demand, Some(Duration::from_secs(3)));
        assert_eq!(c.streams[0].on_demand, Some(Duration::from_secs(5)));
        // Errors name the file.
        let e = run(&["--config", "/nonexistent/relay.toml"]).unwrap_err();
        assert!(e.contains("/nonexistent/relay.toml"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn help_states_the_token_rule() {
        assert!(HELP.contains("At least 8 characters"));
        let e = run(&["--token", "seven77"]).unwrap_err();
        assert!(e.contains("at least 8 characters"), "{e}");
        assert!(run(&["--token", "eight888"]).is_ok());
    }

    #[test]
    fn mistyped_flags_get_a_suggestion_and_a_bare_http_port_is_loopback() {
        for (typed, want) in [
            ("--port", "did you mean --http?"),
            ("--sourc", "did you mean --source?"),
            ("--max-client", "did you mean --max-clients?"),
            ("--no-signal", "did you mean --no-signal-after?"),
            ("--fallbak", "did you mean --fallback?"),
        ] {
            let e = run(&[typed, "x"]).unwrap_err();
            assert!(e.contains(want), "{typed}: {e}");
        }
        let e = run(&["--zzzzzzzz"]).unwrap_err();
        assert!(!e.contains("did you mean"), "{e}");
        assert_eq!(run(&["--http", "28080"]).unwrap().http, "127.0.0.1:28080");
        let flags = help_flags();
        for f in [
            "source",
            "http",
            "max-clients-per-ip",
            "status-details",
            "help",
            "version",
        ] {
            assert!(flags.iter().any(|k| k == f), "{f} in {flags:?}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("8M"), Some(8 << 20));
        assert_eq!(parse_bytes("64KiB"), Some(64 << 10));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("x"), None);
    }
}
