//! `mjpeg-relay sign …`: a link to one stream that opens without a login until it expires.
//! The link's format and checks are [`crate::signing`]'s; this is its command line.

use super::{parse, string, Command};
use std::ffi::OsString;

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

/// `mjpeg-relay sign …` (without `sign`).
pub(super) fn parse_sign(args: &[OsString]) -> Result<SignRequest, String> {
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
