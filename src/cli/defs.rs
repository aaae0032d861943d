//! Every flag once: its name, its value, its default, its `--help` text and what it does to
//! the configuration being built.
//!
//! Why a table: a flag used to be written three times (a match arm in the parser, a line of
//! hand-written help, a key list in the config file reader), and the copies drifted. Now the
//! parser looks a flag up here, `--help`'s OPTIONS are rendered from here, a mistyped flag is
//! matched against here, `--config` files take exactly these keys, and a test holds the
//! README's flag table to it. ripgrep's `flags/defs.rs` is the model.

use super::values::{
    check_token, first_line, number, parse_bytes, parse_pixels, parse_size, seconds,
};
use super::{Building, Config, StreamConfig, MAX_CLIENTS, MAX_PIXELS, MIN_PIXELS};
use crate::source::SourceSpec;
use std::path::PathBuf;

/// One flag.
pub struct Flag {
    /// `--long`, without the dashes.
    pub long: &'static str,
    pub short: Option<char>,
    /// The value's name as `--help` shows it (`SECS`, `N|WxH`, `[=LINGER]`); empty for a switch.
    pub value: &'static str,
    /// As `--help` and the README's table show it; empty when there is none.
    pub default: &'static str,
    /// `--help`'s text, wrapped to its column; the default is added at the end.
    pub doc: &'static str,
    /// Given more than once, each counts (`--stream`, `--allow-host`); otherwise the last wins.
    pub repeats: bool,
    pub does: Does,
    /// What a reload (SIGHUP with `--config`) does when it changes.
    pub reload: Reload,
}

/// What a reload does with a flag whose value changed (the `--config` file read again).
#[derive(Clone, Copy)]
pub enum Reload {
    /// Applied: streams, users, passwords, tokens (and flags that are not settings).
    Applies,
    /// A setting every source uses: each stream starts again with it (but a `tcp-listen:` or
    /// `stdin` one, which cannot). The function says whether it differs.
    RestartsStreams(fn(&Config, &Config) -> bool),
    /// Read once at start (the listener, its limits, the log): the reload says so, a restart
    /// applies it.
    AtRestart(fn(&Config, &Config) -> bool),
}

/// The flags of one reload kind (`streams`: [`Reload::RestartsStreams`], else
/// [`Reload::AtRestart`]) whose values differ between `old` and `new`, by name; flags that
/// set the same thing (`--log-level`, `-v`, `-q`) named once.
pub fn changed(old: &Config, new: &Config, streams: bool) -> Vec<&'static str> {
    let mut seen: Vec<fn(&Config, &Config) -> bool> = Vec::new();
    let mut names = Vec::new();
    for f in FLAGS {
        let differs = match (f.reload, streams) {
            (Reload::RestartsStreams(d), true) | (Reload::AtRestart(d), false) => d,
            _ => continue,
        };
        if differs(old, new) && !seen.iter().any(|s| std::ptr::fn_addr_eq(*s, differs)) {
            seen.push(differs);
            names.push(f.long);
        }
    }
    names
}

fn log_level_differs(old: &Config, new: &Config) -> bool {
    old.log_level != new.log_level
}

fn tls_differs(old: &Config, new: &Config) -> bool {
    old.tls != new.tls
}

/// What a flag does when the parser meets it. The error a function returns is the message
/// after `--flag: `, which the parser adds, unless it names the flag itself (`--stream
/// door=...: ...`, to say which of several).
pub enum Does {
    Switch(fn(&mut Building)),
    Value(fn(&mut Building, String) -> Result<(), String>),
    /// `--flag` or `--flag=VALUE` (never `--flag VALUE`: the next word is not its value).
    Optional(fn(&mut Building, Option<String>) -> Result<(), String>),
    /// `--config FILE`: taken out of the command line before the flags are parsed.
    Config,
    Help,
    Version,
}

impl Flag {
    /// A config file may set it (everything but `--config`, `--help`, `--version`).
    pub fn in_config_file(&self) -> bool {
        matches!(
            self.does,
            Does::Switch(_) | Does::Value(_) | Does::Optional(_)
        )
    }
}

/// The flag `--name` or `-c` names.
pub fn find(long: Option<&str>, short: Option<char>) -> Option<&'static Flag> {
    FLAGS
        .iter()
        .find(|f| (long.is_some() && long == Some(f.long)) || (short.is_some() && f.short == short))
}

/// Every long flag, in `--help`'s order.
pub fn names() -> impl Iterator<Item = &'static str> {
    FLAGS.iter().map(|f| f.long)
}

/// `--help`.
pub fn help() -> String {
    let mut out = String::from(HELP_BEFORE);
    for f in FLAGS {
        let head = match (f.short, f.value) {
            (Some(c), "") => format!("-{c}, --{}", f.long),
            (Some(c), v) => format!("-{c}, --{} {v}", f.long),
            (None, "") => format!("--{}", f.long),
            (None, v) if v.starts_with('[') => format!("--{}{v}", f.long),
            (None, v) => format!("--{} {v}", f.long),
        };
        let mut lines: Vec<String> = f.doc.lines().map(str::to_string).collect();
        if !f.default.is_empty() {
            // After the last line of prose, not after a table of choices (`--source`'s).
            let tag = format!(" [default: {}]", f.default);
            let at = lines.iter().rposition(|l| !l.starts_with(' ')).unwrap_or(0);
            match lines.get_mut(at) {
                Some(line) if 28 + line.len() + tag.len() <= 100 => line.push_str(&tag),
                _ => lines.insert(at + 1, tag.trim_start().to_string()),
            }
        }
        for (i, line) in lines.iter().enumerate() {
            let left = if i == 0 { head.as_str() } else { "" };
            out.push_str(format!("    {left:<24}{line}").trim_end());
            out.push('\n');
        }
    }
    out.push_str(HELP_AFTER);
    out
}

const HELP_BEFORE: &str = "\
mjpeg-relay: relay a live MJPEG stream to many HTTP clients, always live.

Slow clients skip frames instead of falling behind; every buffer between the camera and a
viewer is bounded, including the kernel's socket send buffer.

USAGE:
    mjpeg-relay [OPTIONS]
    mjpeg-relay --config FILE [OPTIONS]
    mjpeg-relay sign --config FILE --stream NAME --ttl TTL [--width N] [--fps N] ...

With no options it serves a built-in test pattern at http://127.0.0.1:8080/

OPTIONS:
";

const HELP_AFTER: &str = "
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
    mjpeg-relay --stream door=http://admin:pw@10.0.0.20/video.cgi \\
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

/// A flag that takes a value, written the short way.
const fn value(
    long: &'static str,
    value: &'static str,
    default: &'static str,
    doc: &'static str,
    set: fn(&mut Building, String) -> Result<(), String>,
) -> Flag {
    Flag {
        long,
        short: None,
        value,
        default,
        doc,
        repeats: false,
        does: Does::Value(set),
        reload: Reload::Applies,
    }
}

/// The same, repeatable.
const fn repeated(
    long: &'static str,
    value: &'static str,
    doc: &'static str,
    add: fn(&mut Building, String) -> Result<(), String>,
) -> Flag {
    Flag {
        repeats: true,
        ..self::value(long, value, "", doc, add)
    }
}

/// Every flag, in `--help`'s order.
pub static FLAGS: &[Flag] = &[
    Flag {
        long: "config",
        short: None,
        value: "FILE",
        default: "",
        doc: "\
Settings from a TOML file: every flag as a key (max_clients = 200),
each stream a [[stream]] table, users who see only their streams
([[user]]), a key for signed links ([signing]); see docs/access.md.
Flags given here win. SIGHUP reads it again",
        repeats: false,
        does: Does::Config,
        reload: Reload::Applies,
    },
    value(
        "source",
        "SPEC",
        "testsrc",
        "\
Where frames come from
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
  stdin, -              MJPEG on standard input",
        |b, v| {
            if v.starts_with("exec:") {
                b.exec_given = Some("--source ".into());
            }
            if b.source.is_some() {
                return Err("given twice; use --stream NAME=SPEC for several".into());
            }
            b.source = Some(StreamConfig {
                name: "default".into(),
                source: SourceSpec::parse(&v)?,
                source_text: crate::source::redact(&v),
                fallbacks: Vec::new(),
                on_demand: None,
            });
            Ok(())
        },
    ),
    repeated(
        "stream",
        "NAME=SPEC",
        "\
Serve several streams at /NAME/stream, /NAME/snapshot (repeatable;
NAME: letters, digits, - and _). Replaces --source.",
        |b, v| {
            if let Some((name, _)) = v.split_once("=exec:") {
                b.exec_given = Some(format!("--stream {name}="));
            }
            // Messages echo the value redacted: it may hold a camera's password.
            let shown = crate::source::redact(&v);
            let (name, spec) = v.split_once('=').ok_or_else(|| {
                format!("'{shown}' is not NAME=SPEC, e.g. --stream door=tcp:10.0.0.5:5000")
            })?;
            crate::hub::check_name(name).map_err(|e| format!("--stream {shown}: {e}"))?;
            if b.named.iter().any(|s| s.name == name) {
                return Err(format!("the name '{name}' is used twice"));
            }
            let source =
                SourceSpec::parse(spec).map_err(|e| format!("--stream {name}=...: {e}"))?;
            b.named.push(StreamConfig {
                name: name.to_string(),
                source,
                source_text: crate::source::redact(spec),
                fallbacks: Vec::new(),
                on_demand: None,
            });
            Ok(())
        },
    ),
    repeated(
        "fallback",
        "SPEC",
        "\
Feed the stream from SPEC while the source is lost, and go back
when it returns (repeatable, tried in order; any source kind).
With --stream: --fallback NAME=SPEC",
        |b, v| {
            if v.contains("exec:") {
                b.exec_given = Some("--fallback ".into());
            }
            b.fallbacks.push(v);
            Ok(())
        },
    ),
    Flag {
        long: "on-demand",
        short: None,
        value: "[=LINGER]",
        default: "LINGER 10",
        doc: "\
Run each source only while someone watches (a viewer, a /mux page,
a /snapshot waiting), and stop it LINGER seconds after the last one
left; --on-demand=NAME or NAME=LINGER for one stream. Not for
tcp-listen: or stdin (the sender decides)",
        repeats: true,
        does: Does::Optional(|b, v| {
            b.on_demand.push(v);
            Ok(())
        }),
        reload: Reload::Applies,
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.no_signal_after != n.no_signal_after),
        ..value(
            "no-signal-after",
            "SECS",
            "2",
            "\
    Show viewers a NO SIGNAL picture after this long without a frame;
    0 turns it off",
            |b, v| {
                b.cfg.no_signal_after = seconds(&v, 0.0, 3600.0)?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::RestartsStreams(|o, n| o.source_timeout != n.source_timeout),
        ..value(
            "source-timeout",
            "SECS",
            "5",
            "Drop and reconnect an upstream silent for this long",
            |b, v| {
                b.cfg.source_timeout = seconds(&v, 0.5, 3600.0)?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.http != n.http),
        ..value(
            "http",
            "HOST:PORT",
            "127.0.0.1:8080",
            "\
    Where to serve HTTP; a bare PORT means 127.0.0.1:PORT; unix:PATH
    serves on a Unix socket (for a reverse proxy on the same host)",
            |b, v| {
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
                    return Err(format!("'{v}' is not HOST:PORT or unix:PATH"));
                }
                b.cfg.http = v;
                Ok(())
            },
        )
    },
    value(
        "auth",
        "USER:PASS",
        "",
        "Require HTTP Basic auth on every endpoint",
        |b, v| {
            crate::auth::check_user_pass(&v)?;
            b.cfg.auth = Some(v);
            Ok(())
        },
    ),
    value(
        "auth-file",
        "PATH",
        "",
        "\
The same, USER:PASS read from a file (keeps it out of ps): the
first line that is not empty or a # comment; none means no login",
        |b, v| {
            // A file with no such line means "no login": the Debian package ships
            // /etc/mjpeg-relay/auth holding only comments, so that requiring a login is one
            // line in that file and the service unit never changes.
            let line = first_line(std::path::Path::new(&v))?;
            match &line {
                Some(up) => crate::auth::check_user_pass(up).map_err(|e| format!("{v}: {e}"))?,
                None => b.cfg.notes.push(format!(
                    "--auth-file {v} holds no USER:PASS line (only comments): no login required"
                )),
            }
            b.cfg.auth = line;
            Ok(())
        },
    ),
    value(
        "token",
        "TOKEN",
        "",
        "\
Require ?token=TOKEN or Authorization: Bearer TOKEN (or Basic, if
--auth is also set) on every endpoint. At least 8 characters,
no spaces, & or #",
        |b, v| {
            check_token(&v)?;
            b.cfg.token = Some(v);
            Ok(())
        },
    ),
    value(
        "token-file",
        "PATH",
        "",
        "\
The same, the token read from a file (keeps it out of ps): the
first line that is not empty or a # comment",
        |b, v| {
            let token = first_line(std::path::Path::new(&v))?
                .ok_or_else(|| format!("{v} holds no token line"))?;
            check_token(&token).map_err(|e| format!("--token-file {v}: {e}"))?;
            b.cfg.token = Some(token);
            Ok(())
        },
    ),
    Flag {
        long: "status-details",
        short: None,
        value: "",
        default: "",
        doc: "\
Show each source's spec (secrets redacted) and each viewer's
address and User-Agent in /status without --auth or --token
(with a login they are always shown)",
        repeats: false,
        does: Does::Switch(|b| b.cfg.status_details = true),
        reload: Reload::AtRestart(|o, n| o.status_details != n.status_details),
    },
    Flag {
        reload: Reload::AtRestart(tls_differs),
        ..value(
            "tls-cert",
            "FILE",
            "",
            "\
    Serve HTTPS: the certificate chain, PEM (leaf first), e.g. an ACME
    client's fullchain.pem; read again when it changes",
            |b, v| {
                b.tls_cert = Some(PathBuf::from(v));
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(tls_differs),
        ..value(
            "tls-key",
            "FILE",
            "",
            "Its private key, PEM; read again when it changes",
            |b, v| {
                b.tls_key = Some(PathBuf::from(v));
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.allow_origin != n.allow_origin),
        ..value(
            "allow-origin",
            "ORIGIN",
            "",
            "\
    Send Access-Control-Allow-Origin: ORIGIN (CORS), e.g. * or
    https://dashboard.example",
            |b, v| {
                if v.is_empty() || v.contains(['\r', '\n']) {
                    return Err("expected an origin such as https://host or *".into());
                }
                b.cfg.allow_origin = Some(v);
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.allow_hosts != n.allow_hosts),
        ..repeated(
            "allow-host",
            "NAME",
            "\
    Without --auth or --token, requests must name the relay by IP
    address or localhost in Host (against DNS rebinding); also
    accept NAME, e.g. camera.local (repeatable)",
            |b, v| {
                let ok = !v.is_empty()
                    && v.len() <= 253
                    && v.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
                if !ok {
                    return Err(format!(
                        "'{v}' is not a host name (letters, digits, - and .)"
                    ));
                }
                b.cfg.allow_hosts.push(v);
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.static_dir != n.static_dir),
        ..value(
            "static",
            "DIR",
            "",
            "Serve DIR at / (the viewer moves to /viewer; dotfiles never)",
            |b, v| {
                let dir = std::path::Path::new(&v)
                    .canonicalize()
                    .ok()
                    .filter(|d| d.is_dir())
                    .ok_or_else(|| format!("'{v}' is not a directory"))?;
                b.cfg.static_dir = Some(dir);
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::RestartsStreams(|o, n| o.fps != n.fps),
        ..value(
            "fps",
            "N",
            "15",
            "\
    testsrc and file: frame rate, and how often an http:// URL that
    serves single pictures (a snapshot URL) is polled",
            |b, v| {
                b.cfg.fps = number(&v, 0.1..=240.0, "a rate")?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::RestartsStreams(|o, n| (o.width, o.height) != (n.width, n.height)),
        ..value("size", "WxH", "640x480", "testsrc frame size", |b, v| {
            let (w, h) = parse_size(&v)
                .ok_or_else(|| format!("'{v}' is not WIDTHxHEIGHT with each from 16 to 8192"))?;
            (b.cfg.width, b.cfg.height) = (w, h);
            Ok(())
        })
    },
    Flag {
        reload: Reload::RestartsStreams(|o, n| o.max_frame_bytes != n.max_frame_bytes),
        ..value(
            "max-frame-bytes",
            "N",
            "8M",
            "Drop frames larger than this; K/M suffixes",
            |b, v| {
                b.cfg.max_frame_bytes = parse_bytes(&v)
                    .filter(|&n| (1024..=1 << 30).contains(&n))
                    .ok_or_else(|| format!("'{v}' is not a size from 1K to 1024M"))?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.max_pixels != n.max_pixels),
        ..value(
            "max-pixels",
            "N|WxH",
            "4096x3072",
            "\
    The largest picture smaller sizes may decode (about 3 bytes a
    pixel while it is made smaller); K/M suffixes count thousands
    and millions (12.6 M: 4K and 12 MP cameras)",
            |b, v| {
                b.cfg.max_pixels = parse_pixels(&v)
                    .filter(|n| (MIN_PIXELS..=MAX_PIXELS).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "'{v}' is not a number of pixels (e.g. 12M) or WIDTHxHEIGHT, \
                             from 64K to 268M"
                        )
                    })?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::RestartsStreams(|o, n| o.warmup != n.warmup),
        ..value(
            "warmup",
            "N",
            "0",
            "\
    Discard the first N frames after every start of a camera or
    connection to it (exposure settling), for every viewer",
            |b, v| {
                b.cfg.warmup = number(&v, 0..=1000, "a number")?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::RestartsStreams(|o, n| o.history.max_age != n.history.max_age),
        ..value(
            "history",
            "SECS",
            "30",
            "\
    Keep each stream's last SECS seconds in memory, for
    /snapshot?ago= and /clip; 0 keeps none",
            |b, v| {
                b.cfg.history.max_age = seconds(&v, 0.0, 86_400.0)?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::RestartsStreams(|o, n| o.history.max_bytes != n.history.max_bytes),
        ..value(
            "history-bytes",
            "N",
            "8M",
            "... but at most N bytes per stream; K/M suffixes",
            |b, v| {
                b.cfg.history.max_bytes = parse_bytes(&v)
                    .filter(|&n| n <= 1 << 30)
                    .ok_or_else(|| format!("'{v}' is not a size from 0 to 1024M"))?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.send_timeout != n.send_timeout),
        ..value(
            "send-timeout",
            "SECS",
            "10",
            "Disconnect a client that cannot take a frame in this time",
            |b, v| {
                b.cfg.send_timeout = seconds(&v, 0.1, 3600.0)?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.max_clients != n.max_clients),
        ..value(
            "max-clients",
            "N",
            "1000",
            "Concurrent HTTP connections; more get 503",
            |b, v| {
                b.cfg.max_clients = number(&v, 1..=MAX_CLIENTS, "a number").map_err(|e| {
                    if cfg!(target_pointer_width = "32") {
                        format!(
                            "{e} (a 32-bit build: each client's thread reserves its stack in an \
                             address space of 3 to 4 GB)"
                        )
                    } else {
                        e
                    }
                })?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.max_per_ip != n.max_per_ip),
        ..value(
            "max-clients-per-ip",
            "N",
            "half of --max-clients",
            "\
    Concurrent connections from one address; more get 503. Behind a
    proxy on the same host over TCP, every viewer has its address:
    set it to --max-clients, or use unix:",
            |b, v| {
                b.cfg.max_per_ip = Some(number(&v, 1..=100_000, "a number")?);
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(|o, n| o.header_timeout != n.header_timeout),
        ..value(
            "header-timeout",
            "SECS",
            "10",
            "Time a client has to send its whole request head",
            |b, v| {
                b.cfg.header_timeout = seconds(&v, 0.1, 600.0)?;
                Ok(())
            },
        )
    },
    Flag {
        reload: Reload::AtRestart(log_level_differs),
        ..value(
            "log-level",
            "LEVEL",
            "info",
            "error, warn, info, debug or trace",
            |b, v| {
                b.cfg.log_level = v
                    .parse()
                    .map_err(|_| format!("'{v}' is not one of error, warn, info, debug, trace"))?;
                Ok(())
            },
        )
    },
    Flag {
        long: "verbose",
        short: Some('v'),
        value: "",
        default: "",
        doc: "Same as --log-level debug",
        repeats: false,
        does: Does::Switch(|b| b.cfg.log_level = log::LevelFilter::Debug),
        reload: Reload::AtRestart(log_level_differs),
    },
    Flag {
        long: "quiet",
        short: Some('q'),
        value: "",
        default: "",
        doc: "Same as --log-level warn",
        repeats: false,
        does: Does::Switch(|b| b.cfg.log_level = log::LevelFilter::Warn),
        reload: Reload::AtRestart(log_level_differs),
    },
    Flag {
        long: "help",
        short: Some('h'),
        value: "",
        default: "",
        doc: "Print this help",
        repeats: false,
        does: Does::Help,
        reload: Reload::Applies,
    },
    Flag {
        long: "version",
        short: Some('V'),
        value: "",
        default: "",
        doc: "Print the version",
        repeats: false,
        does: Does::Version,
        reload: Reload::Applies,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn names_and_shorts_are_unique_and_help_fits_its_columns() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(
                FLAGS[i + 1..]
                    .iter()
                    .all(|g| g.long != f.long && (f.short.is_none() || g.short != f.short)),
                "--{} twice",
                f.long
            );
            assert!(
                f.long.len() + f.value.len() <= 21,
                "--{}: head too wide",
                f.long
            );
        }
        let help = help();
        for line in help.lines() {
            assert!(line.len() <= 100, "too wide: {line}");
        }
        for f in FLAGS {
            assert!(help.contains(&format!("--{}", f.long)), "--{}", f.long);
            if !f.default.is_empty() {
                assert!(
                    help.contains(&format!("[default: {}]", f.default)),
                    "--{}",
                    f.long
                );
            }
        }
        assert!(help.contains("--on-demand[=LINGER]"));
        assert!(help.contains("-v, --verbose"));
    }

    /// The README's flag table names exactly these flags, with these value names and
    /// defaults (its prose is its own: the README explains more than `--help` has room for).
    #[test]
    fn the_readmes_flag_table_matches_the_definitions() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("## Flags")
            .nth(1)
            .expect("README has a ## Flags section");
        let mut seen = Vec::new();
        for row in table.lines().filter(|l| l.starts_with("| `-")) {
            // `\|` inside a cell is a literal bar (`N\|WxH`).
            let row = row.replace("\\|", "\u{1}");
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let (first, default) = (cells[1], cells[2].replace('`', ""));
            let flags: Vec<&Flag> = first
                .split('`')
                .filter(|c| c.starts_with("--"))
                .map(|c| {
                    let c = c.replace('\u{1}', "|");
                    let name = c[2..].split([' ', '[']).next().unwrap().to_string();
                    let f = find(Some(&name), None)
                        .unwrap_or_else(|| panic!("README names --{name}, no such flag"));
                    let value = c[2 + name.len()..].trim_start().to_string();
                    assert_eq!(value, f.value, "README's value name for --{name}");
                    f
                })
                .collect();
            for f in &flags {
                let want = if flags.len() == 1 { f.default } else { "" };
                assert_eq!(default, want, "README's default for --{}", f.long);
                seen.push(f.long);
            }
        }
        for f in FLAGS {
            assert!(
                seen.contains(&f.long),
                "the README's table lacks --{}",
                f.long
            );
        }
        assert_eq!(seen.len(), FLAGS.len(), "a flag in two rows: {seen:?}");
    }

    /// docs/access.md's reload table names, for each kind of reload, exactly the flags
    /// (as config keys) of that kind.
    #[test]
    fn the_reload_table_matches_the_definitions() {
        let doc = include_str!("../../docs/access.md");
        let keys_in_row = |marker: &str| -> Vec<String> {
            let row = doc
                .lines()
                .find(|l| l.starts_with('|') && l.contains(marker))
                .unwrap_or_else(|| panic!("docs/access.md has no row saying '{marker}'"));
            let first = row.split('|').nth(1).unwrap();
            let mut keys: Vec<String> = first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|k| k.replace('_', "-"))
                .collect();
            keys.sort();
            keys
        };
        let of_kind = |streams: bool| -> Vec<String> {
            let mut v: Vec<String> = FLAGS
                .iter()
                .filter(|f| match f.reload {
                    Reload::RestartsStreams(_) => streams,
                    Reload::AtRestart(_) => !streams,
                    Reload::Applies => false,
                })
                .map(|f| f.long.to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(keys_in_row("starts again with them"), of_kind(true));
        assert_eq!(keys_in_row("take effect at a restart"), of_kind(false));
    }

    #[test]
    fn a_reload_names_what_it_cannot_apply_and_what_restarts_the_streams() {
        let parse = |args: &[&str]| match super::super::parse(args.iter().map(OsString::from)) {
            Ok(super::super::Command::Run(c)) => *c,
            other => panic!("{other:?}"),
        };
        let old = parse(&[]);
        let new = parse(&["--fps", "5", "--send-timeout", "3", "-v", "--auth", "a:b"]);
        assert_eq!(changed(&old, &new, true), ["fps"]);
        // -v and --log-level set the same thing: named once.
        assert_eq!(changed(&old, &new, false), ["send-timeout", "log-level"]);
        assert!(changed(&old, &old, true).is_empty() && changed(&old, &old, false).is_empty());
    }
}
