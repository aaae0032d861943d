//! Command line: flags (and a `--config` file's keys, which become flags) to a [`Config`].
//!
//! Parsing is strict (an unknown flag or a bad value is an error, exit code 2) because a camera
//! server usually starts unattended: better to refuse at start-up than to run misconfigured.
//!
//! - [`defs`]: every flag once (name, value, default, help, what it sets); `--help` comes
//!   from it.
//! - `values`: the value syntaxes flags share (seconds, ranges, sizes).
//! - [`sign`]: the `mjpeg-relay sign` subcommand.

pub mod defs;
mod sign;
mod values;

use crate::source::SourceSpec;
pub use defs::help;
use defs::Does;
use sign::parse_sign;
pub use sign::{sign_link, SignRequest, SIGN_USAGE};
use std::ffi::OsString;
use std::time::Duration;
pub use values::parse_bytes;

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

impl StreamConfig {
    /// The source, then its fallbacks.
    pub fn sources(&self) -> impl Iterator<Item = &SourceSpec> {
        std::iter::once(&self.source).chain(self.fallbacks.iter().map(|(f, _)| f))
    }
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

fn parse_flags(args: Vec<OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut b = Building::default();
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let found = match &arg {
            Long(name) => defs::find(Some(name), None),
            Short(c) => defs::find(None, Some(*c)),
            Value(v) => return Err(b.stray_value(v)),
        };
        let Some(flag) = found else {
            return Err(b.stray(match arg {
                Long(name) => unknown_flag(name),
                _ => arg.unexpected().to_string(),
            }));
        };
        let name = format!("--{}", flag.long);
        let done = match flag.does {
            Does::Help => return Ok(Command::Help),
            Does::Version => return Ok(Command::Version),
            Does::Config => Err("given twice, or after --".to_string()),
            Does::Switch(set) => {
                set(&mut b);
                Ok(())
            }
            Does::Value(set) => {
                let v = string(&mut p, &name)?;
                set(&mut b, v)
            }
            Does::Optional(set) => {
                let v = p
                    .optional_value()
                    .map(|v| v.into_string().map_err(|_| format!("{name}: not UTF-8")))
                    .transpose()?;
                set(&mut b, v)
            }
        };
        done.map_err(|e| {
            if e.starts_with("--") {
                e
            } else {
                format!("{name}: {e}")
            }
        })?;
    }
    b.finish().map(|cfg| Command::Run(Box::new(cfg)))
}

/// The configuration while the flags are read, and what only makes sense once all are: the
/// streams (from `--source` or `--stream`), their fallbacks and on-demand settings, and
/// TLS's two files. [`defs`]' functions fill it.
#[derive(Default)]
pub struct Building {
    cfg: Config,
    source: Option<StreamConfig>,
    named: Vec<StreamConfig>,
    fallbacks: Vec<String>,
    /// `--on-demand[=[NAME=]LINGER|NAME]`, resolved once every stream is known.
    on_demand: Vec<Option<String>>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
    /// `--source exec:ffmpeg -f lavfi …` unquoted: the shell split the command, and the
    /// first of its own options is ours to refuse. Any stray argument after an `exec:` value
    /// says so; this is the flag that gave it (`--source `, `--stream NAME=`).
    exec_given: Option<String>,
}

impl Building {
    fn stray(&self, msg: String) -> String {
        match &self.exec_given {
            Some(flag) => format!(
                "{msg}\nIf it belongs to the exec: command: a command with spaces must be one \
                 quoted argument, e.g. {flag}'exec:ffmpeg -f lavfi -i testsrc -f mjpeg -'"
            ),
            None => msg,
        }
    }

    fn stray_value(&self, v: &std::ffi::OsStr) -> String {
        let v = v.to_string_lossy();
        match self.exec_given {
            Some(_) => self.stray(format!("unexpected argument '{v}'")),
            None => format!("unexpected argument '{v}'; did you mean --source {v}?"),
        }
    }

    /// Every flag read: the configuration, or what does not fit together.
    fn finish(self) -> Result<Config, String> {
        let mut cfg = self.cfg;
        match (self.source, self.named.is_empty()) {
            (Some(_), false) => {
                return Err(
                    "--source and --stream cannot be combined; name every stream \
                            with --stream NAME=SPEC"
                        .into(),
                )
            }
            (Some(s), true) => cfg.streams = vec![s],
            (None, false) => {
                cfg.streams = self.named;
                cfg.named = true;
            }
            (None, true) => {}
        }
        for v in self.fallbacks {
            add_fallback(&mut cfg, &v)?;
        }
        for v in self.on_demand {
            apply_on_demand(&mut cfg, v.as_deref())?;
        }
        cfg.tls = match (self.tls_cert, self.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(
                    "--tls-cert and --tls-key go together (the certificate chain \
                            and its private key, PEM)"
                        .into(),
                )
            }
        };
        if cfg.tls.is_some() && cfg.http.starts_with("unix:") {
            return Err(
                "--tls-cert: a Unix socket is for a proxy on the same host, which \
                        does TLS itself; serve HTTPS on a TCP address (--http HOST:PORT)"
                    .into(),
            );
        }
        let stdin_users = cfg
            .streams
            .iter()
            .flat_map(StreamConfig::sources)
            .filter(|s| **s == SourceSpec::Stdin)
            .count();
        if stdin_users > 1 {
            return Err("--stream: only one stream can read stdin".into());
        }
        Ok(cfg)
    }
}

/// One `--fallback`: `SPEC` for the single stream, `NAME=SPEC` with `--stream`.
fn add_fallback(cfg: &mut Config, v: &str) -> Result<(), String> {
    let (target, spec) = if cfg.named {
        let (name, spec) = v
            .split_once('=')
            .filter(|(n, _)| cfg.streams.iter().any(|s| s.name == *n))
            .ok_or_else(|| {
                format!(
                    "--fallback: '{}' is not NAME=SPEC for one of the --stream names",
                    crate::source::redact(v)
                )
            })?;
        (cfg.streams.iter_mut().find(|s| s.name == name), spec)
    } else {
        (cfg.streams.first_mut(), v)
    };
    let source = SourceSpec::parse(spec).map_err(|e| format!("--fallback: {e}"))?;
    if let Some(s) = target {
        s.fallbacks.push((source, crate::source::redact(spec)));
    }
    Ok(())
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
        let push = s.sources().find(|k| k.is_push());
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
    let prefixed: Vec<&str> = defs::names().filter(|k| k.starts_with(flag)).collect();
    let by_prefix = (flag.len() >= 3 && prefixed.len() == 1).then(|| prefixed[0]);
    let guess = alias.or(by_prefix).or_else(|| {
        defs::names()
            .map(|k| (edit_distance(flag, k), k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 4))
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    });
    match guess {
        Some(g) => format!("unknown flag --{flag}; did you mean --{g}?"),
        None => format!("unknown flag --{flag}"),
    }
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

/// The value of `flag`, which must be UTF-8.
fn string(p: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let v = p.value().map_err(|_| format!("{flag} needs a value"))?;
    v.into_string()
        .map_err(|v| format!("{flag}: '{}' is not valid UTF-8", v.to_string_lossy()))
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

/// `--max-pixels` by default: 4K (3840x2160, 4096x2160) and a 12 MP sensor (4056x3040),
/// 38 MB while one is decoded: six sizes at once fit a 32-bit address space many times.
pub const DEFAULT_MAX_PIXELS: usize = 4096 * 3072;
pub(crate) const MIN_PIXELS: usize = 64_000;
pub(crate) const MAX_PIXELS: usize = 16384 * 16384;

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
        assert!(help().contains("At least 8 characters"));
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
        let flags: Vec<&str> = defs::names().collect();
        for f in [
            "source",
            "http",
            "max-clients-per-ip",
            "status-details",
            "help",
            "version",
        ] {
            assert!(flags.contains(&f), "{f} in {flags:?}");
        }
    }

    #[test]
    fn the_groups_name_real_flags() {
        for name in FLAG_GROUPS.iter().flat_map(|g| g.iter()) {
            assert!(defs::find(Some(name), None).is_some(), "--{name}");
        }
    }
}
