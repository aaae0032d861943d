//! `--source` and `--fallback` values: what each kind of source is called and how a wrong
//! one is told what would work. Parsing only; [`super::start`] starts what this describes.

use super::redact;

/// A parsed `--source` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Built-in moving test pattern.
    TestSrc,
    /// MJPEG on standard input.
    Stdin,
    /// Listen on an address; the upstream connects to us (gstreamer `tcpclientsink`).
    TcpListen(String),
    /// Connect to `HOST:PORT` (gstreamer `tcpserversink`, any TCP MJPEG server).
    Tcp(String),
    /// Connect to a Unix stream socket.
    Unix(std::path::PathBuf),
    /// Pull `multipart/x-mixed-replace` (or a raw MJPEG body) over HTTP.
    Http(String),
    /// Run `sh -c COMMAND` and read its stdout.
    Exec(String),
    /// Replay a recorded file, or a directory of `.jpg` files, at `--fps`, looping.
    File(std::path::PathBuf),
}

impl SourceSpec {
    /// The sender decides when frames come (`tcp-listen:`, `stdin`): the relay cannot start
    /// or stop it, so it cannot run on demand, and a reload cannot end it and start it again
    /// (its port or pipe is held by a thread that waits for the sender).
    pub fn is_push(&self) -> bool {
        matches!(self, SourceSpec::TcpListen(_) | SourceSpec::Stdin)
    }

    /// How `/status` shows this source: `text` (the spec as given, passwords redacted) to the
    /// operator; to anyone else the kind, and for a URL its host, but no command line and no
    /// path or query (either may hold a secret the redaction cannot recognise).
    pub fn shown(&self, text: &str) -> crate::feed::Spec {
        let public = match self {
            SourceSpec::Exec(_) => {
                "exec:… (the command is shown with --status-details or a login)".to_string()
            }
            SourceSpec::Http(_) => {
                let rest = text.split_once("://").map_or("", |(_, r)| r);
                let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
                let host = authority.rsplit('@').next().unwrap_or("");
                format!("http://{host}/…")
            }
            _ => text.to_string(),
        };
        crate::feed::Spec {
            full: text.to_string(),
            public,
        }
    }

    pub fn parse(spec: &str) -> Result<SourceSpec, String> {
        match spec {
            "testsrc" => return Ok(SourceSpec::TestSrc),
            "stdin" | "-" => return Ok(SourceSpec::Stdin),
            _ => {}
        }
        if let Some(addr) = spec.strip_prefix("tcp-listen:") {
            if addr.is_empty() {
                return Err("tcp-listen needs an address, e.g. tcp-listen:127.0.0.1:9999".into());
            }
            // A bare port means loopback: the safe default for an unauthenticated input.
            let addr = if addr.parse::<u16>().is_ok() {
                format!("127.0.0.1:{addr}")
            } else {
                addr.to_string()
            };
            if std::net::ToSocketAddrs::to_socket_addrs(&addr.as_str()).is_err() {
                return Err(format!(
                    "'{addr}' is not an address to listen on (HOST:PORT)"
                ));
            }
            return Ok(SourceSpec::TcpListen(addr));
        }
        if let Some(addr) = spec.strip_prefix("tcp:") {
            return match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(SourceSpec::Tcp(addr.to_string()))
                }
                _ => Err(format!(
                    "'{addr}' is not HOST:PORT to connect to, e.g. tcp:127.0.0.1:5000"
                )),
            };
        }
        if let Some(path) = spec.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix needs a socket path, e.g. unix:/run/camera.sock".into());
            }
            return Ok(SourceSpec::Unix(path.into()));
        }
        if spec.starts_with("http://") {
            return super::http_pull::check_url(spec).map(|()| SourceSpec::Http(spec.to_string()));
        }
        if spec.starts_with("https://") {
            return Err(format!(
                "'{}': https is not supported (this build has no TLS); use http://, or put a \
                 TLS-terminating proxy such as stunnel in front",
                redact(spec)
            ));
        }
        if let Some(cmd) = spec.strip_prefix("exec:") {
            if cmd.trim().is_empty() {
                return Err("exec needs a command, e.g. exec:ffmpeg -i ... -f mjpeg -".into());
            }
            return Ok(SourceSpec::Exec(cmd.to_string()));
        }
        if let Some(path) = spec.strip_prefix("file:") {
            let p = std::path::Path::new(path);
            if !p.exists() {
                return Err(format!("'{path}' does not exist"));
            }
            return Ok(SourceSpec::File(p.into()));
        }
        // The two most common cameras, named the way people name them: say what works.
        if spec.starts_with("/dev/video") {
            return Err(format!(
                "'{spec}' is a camera device, which the relay does not open itself; let ffmpeg \
                 read it: --source 'exec:ffmpeg -loglevel error -f v4l2 -input_format mjpeg \
                 -i {spec} -c:v copy -f mjpeg -' (for a camera without MJPEG output, replace \
                 -input_format mjpeg and -c:v copy with -c:v mjpeg -q:v 5)"
            ));
        }
        if let Some(scheme) = ["rtsp://", "rtsps://", "rtmp://"]
            .iter()
            .find(|s| spec.starts_with(**s))
        {
            let shown = redact(spec);
            return Err(format!(
                "'{shown}': {} is a video stream the relay does not decode itself; let ffmpeg \
                 turn it into MJPEG: --source 'exec:ffmpeg -loglevel error -rtsp_transport \
                 tcp -i {spec_text} -c:v mjpeg -q:v 5 -f mjpeg -' (an IP camera often also \
                 has an MJPEG URL of its own, e.g. http://CAMERA/video.cgi)",
                scheme.trim_end_matches("://"),
                spec_text = if scheme.starts_with("rtsp") {
                    shown.as_str()
                } else {
                    "URL"
                },
            ));
        }
        Err(format!(
            "unknown source '{}': expected testsrc, stdin (or -), tcp-listen:HOST:PORT, \
             tcp:HOST:PORT, unix:PATH, http://URL, exec:COMMAND or file:PATH",
            redact(spec)
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_public_form_keeps_the_kind_and_hides_commands_paths_and_users() {
        let shown = |spec: &str| {
            let text = crate::source::redact(spec);
            SourceSpec::parse(spec).unwrap().shown(&text)
        };
        let s = shown("http://admin:pw@10.0.0.20:8080/video.cgi?user=a&pwd=b");
        assert_eq!(s.public, "http://10.0.0.20:8080/…");
        assert!(!s.full.contains("pw@"), "{}", s.full);
        assert!(shown("exec:ffmpeg -i rtsp://u:p@cam/x")
            .public
            .starts_with("exec:…"));
        assert_eq!(shown("tcp:10.0.0.5:5000").public, "tcp:10.0.0.5:5000");
        assert_eq!(shown("testsrc").public, "testsrc");
        assert_eq!(s.shown(false), s.public);
        assert_eq!(s.shown(true), s.full);
    }

    use super::*;

    #[test]
    fn specs() {
        assert_eq!(SourceSpec::parse("testsrc"), Ok(SourceSpec::TestSrc));
        assert_eq!(SourceSpec::parse("-"), Ok(SourceSpec::Stdin));
        assert_eq!(
            SourceSpec::parse("tcp-listen:9999"),
            Ok(SourceSpec::TcpListen("127.0.0.1:9999".into()))
        );
        assert_eq!(
            SourceSpec::parse("tcp-listen:0.0.0.0:5000"),
            Ok(SourceSpec::TcpListen("0.0.0.0:5000".into()))
        );
        assert!(SourceSpec::parse("tcp-listen:").is_err());
        assert!(SourceSpec::parse("tcp-listen:nope").is_err());
        assert!(SourceSpec::parse("rtsp://x").is_err());
        // Issue 22: the common camera names point at the recipe that works.
        let e = SourceSpec::parse("rtsp://admin:pw@10.0.0.9/live").unwrap_err();
        assert!(
            e.contains("exec:ffmpeg") && e.contains("rtsp://admin:***@10.0.0.9/live"),
            "{e}"
        );
        assert!(!e.contains(":pw@"), "{e}");
        let e = SourceSpec::parse("/dev/video0").unwrap_err();
        assert!(
            e.contains("exec:ffmpeg") && e.contains("-f v4l2") && e.contains("/dev/video0"),
            "{e}"
        );
        assert_eq!(
            SourceSpec::parse("tcp:cam.local:5000"),
            Ok(SourceSpec::Tcp("cam.local:5000".into()))
        );
        assert!(SourceSpec::parse("tcp:5000").is_err());
        assert!(SourceSpec::parse("tcp:host:port").is_err());
        assert_eq!(
            SourceSpec::parse("unix:/run/cam.sock"),
            Ok(SourceSpec::Unix("/run/cam.sock".into()))
        );
        assert!(SourceSpec::parse("unix:").is_err());
        assert_eq!(
            SourceSpec::parse("http://u:p@10.0.0.2:81/video.cgi"),
            Ok(SourceSpec::Http("http://u:p@10.0.0.2:81/video.cgi".into()))
        );
        assert!(SourceSpec::parse("http://").is_err());
        let e = SourceSpec::parse("https://u:secret@cam/x").unwrap_err();
        assert!(e.contains("TLS") && !e.contains("secret"), "{e}");
        assert_eq!(
            SourceSpec::parse("exec:ffmpeg -i x -f mjpeg -"),
            Ok(SourceSpec::Exec("ffmpeg -i x -f mjpeg -".into()))
        );
        assert!(SourceSpec::parse("exec: ").is_err());
        assert!(SourceSpec::parse("file:/no/such/file.mjpeg").is_err());
        assert_eq!(
            SourceSpec::parse("file:/"),
            Ok(SourceSpec::File("/".into()))
        );
    }
}
