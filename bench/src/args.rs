//! Command-line options: parsed once, strictly (a mistyped option is an error).

/// Every option any command takes; each takes a value.
pub(crate) const OPTIONS: &[&str] = &[
    "server",
    "duration",
    "relay-bin",
    "clients",
    "clients-n",
    "rate",
    "queue",
    "frame-bytes",
    "size",
    "servers",
    "pairs",
    "url",
    "push",
    "listen",
    "serve-http",
    "fps",
    "fast",
    "slow",
    "stalled",
    "churn",
    "slow-rate",
    "pid",
    "label",
    "http",
    "upstream",
    "relay-bins",
    "cameras",
    "frames",
    "query",
    "rates",
    "rtts",
    "acks",
    "auto-seconds",
];

/// A command's arguments, parsed once by lexopt: `--name value` (or `--name=value`) options
/// from [`OPTIONS`] and positional words. Strict, so a value is never taken for an option
/// and a mistyped option is an error, not silently ignored.
pub(crate) struct Args {
    /// As given, for re-running this tool with them (the link scenario's namespace).
    pub(crate) raw: Vec<String>,
    pub(crate) positional: Vec<String>,
    pub(crate) options: Vec<(String, String)>,
}

impl Args {
    pub(crate) fn parse(raw: &[String]) -> Result<Args, String> {
        use lexopt::prelude::*;
        let mut p = lexopt::Parser::from_args(raw.iter().cloned());
        let (mut positional, mut options) = (Vec::new(), Vec::new());
        while let Some(arg) = p.next().map_err(|e| e.to_string())? {
            match arg {
                Long(name) if OPTIONS.contains(&name) => {
                    let name = name.to_string();
                    let value = p
                        .value()
                        .map_err(|_| format!("--{name} needs a value"))?
                        .into_string()
                        .map_err(|_| format!("--{name}: not UTF-8"))?;
                    options.push((name, value));
                }
                Value(v) => positional.push(v.to_string_lossy().into_owned()),
                other => return Err(format!("{}; see --help", other.unexpected())),
            }
        }
        Ok(Args {
            raw: raw.to_vec(),
            positional,
            options,
        })
    }
}

/// The value of `--name` (given with its dashes), the last one if repeated.
pub(crate) fn flag<'a>(args: &'a Args, name: &str) -> Option<&'a str> {
    let name = name.trim_start_matches('-');
    args.options
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn num<T: std::str::FromStr>(args: &Args, name: &str, default: T) -> Result<T, String> {
    match flag(args, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}: bad value '{v}'")),
    }
}
