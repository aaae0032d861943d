//! `--config FILE`: the command line in a TOML file, plus what flags cannot say (users and
//! signing keys). Five cameras with fallbacks, on-demand and passwords make a `ps` line that
//! leaks every secret and a systemd unit nobody can read; a file keeps both.
//!
//! Every flag has a key, its name with `_` or `-` (`max_clients = 200`, `allow_host =
//! ["cams.example.test"]`, `status_details = true`), and each stream is a `[[stream]]` table:
//!
//! ```toml
//! http = "0.0.0.0:8080"
//!
//! [[stream]]
//! name = "door"
//! source = "http://admin:pw@10.0.0.20/video.cgi"
//! fallback = ["testsrc"]
//! on_demand = 10            # or true (the default linger)
//!
//! [[user]]
//! name = "alice"
//! password = "$2y$10$…"     # htpasswd -nbB; "$argon2id$…"; or "plain:…" (warned about)
//! streams = ["door"]        # names or patterns ("*", "garden-*")
//! admin = false             # true: every stream, /status and /metrics whole
//! max_viewers = 4
//!
//! [signing]
//! key_file = "/etc/mjpeg-relay/signing.key"   # or ["new.key", "old.key"] while rotating
//! ```
//!
//! The keys become flags ([`FileConfig::args`]) that [`crate::cli`] parses as if typed, so a
//! key checks its value exactly as its flag does, and the command line, given after, wins.
//! Errors name the file, line and column; none echoes a value (it may be a password).

use crate::users::{check_pattern, Password, User};
use std::ffi::OsString;
use std::path::Path;
use toml::de::{DeTable, DeValue};

/// What a config file says.
#[derive(Debug, Default)]
pub struct FileConfig {
    /// `(flag name, argument)`: e.g. `("max-clients", "--max-clients=200")`, in file order.
    pub args: Vec<(String, OsString)>,
    pub users: Vec<User>,
    /// `[signing] key_file`: the keys, the first signs.
    pub keys: Vec<Vec<u8>>,
    /// Things worth a log line (plain-text passwords).
    pub notes: Vec<String>,
}

/// How a flag takes its value, as a file gives it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `--flag VALUE`.
    Value,
    /// `--flag VALUE`, repeatable: an array gives it several times.
    List,
    /// `--flag`: `true` gives it, `false` does not.
    Switch,
    /// `--on-demand[=LINGER]`: `true`, or a number of seconds.
    OptionalValue,
}

/// The flag a top-level key names and how it takes its value: every flag of
/// [`crate::cli::defs`] but `--config`, `--help` and `--version`.
fn kind_of(flag: &str) -> Option<Kind> {
    use crate::cli::defs::{find, Does};
    let f = find(Some(flag), None).filter(|f| f.in_config_file())?;
    Some(match f.does {
        Does::Switch(_) => Kind::Switch,
        Does::Optional(_) => Kind::OptionalValue,
        _ if f.repeats => Kind::List,
        _ => Kind::Value,
    })
}

/// Reads and checks `path`.
pub fn read(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--config: cannot read {}: {e}", path.display()))?;
    parse(&text, path)
}

/// Where a byte offset is, for messages: `FILE:LINE:COLUMN`.
struct Place<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Place<'_> {
    fn at(&self, offset: usize) -> String {
        // Spans fall on character boundaries; if one ever did not, the whole text is "before".
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{col}", self.file.display())
    }

    fn err(&self, span: std::ops::Range<usize>, msg: impl std::fmt::Display) -> String {
        format!("{}: {msg}", self.at(span.start))
    }
}

type Spanned<T> = toml::Spanned<T>;

/// Parses a config file's text; `file` names it in messages and anchors relative key files.
pub fn parse(text: &str, file: &Path) -> Result<FileConfig, String> {
    let place = Place { text, file };
    let doc = DeTable::parse(text).map_err(|e| {
        // Our own message, not the library's Display, which quotes the line (a password).
        let at = e
            .span()
            .map_or(file.display().to_string(), |s| place.at(s.start));
        format!("{at}: {} (the file was not used)", e.message().trim())
    })?;
    let mut out = FileConfig::default();
    for (key, value) in doc.get_ref().iter() {
        let name = key.get_ref().as_ref();
        match name {
            "stream" => streams(&place, value, &mut out)?,
            "user" => users(&place, value, &mut out)?,
            "signing" => signing(&place, value, &mut out)?,
            _ => flag(&place, key, value, &mut out)?,
        }
    }
    Ok(out)
}

/// A top-level key: a flag.
fn flag(
    place: &Place<'_>,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    out: &mut FileConfig,
) -> Result<(), String> {
    let flag = key.get_ref().replace('_', "-");
    let Some(kind) = kind_of(&flag) else {
        return Err(place.err(
            key.span(),
            format!(
                "unknown key '{}' (the keys are the flags of --help without the dashes, \
                 and [[stream]], [[user]], [signing])",
                key.get_ref()
            ),
        ));
    };
    let mut push = |v: Option<String>| {
        let arg = match v {
            Some(v) => format!("--{flag}={v}"),
            None => format!("--{flag}"),
        };
        out.args.push((flag.clone(), arg.into()));
    };
    match (kind, value.get_ref()) {
        (Kind::Switch, DeValue::Boolean(b)) => {
            if *b {
                push(None)
            }
        }
        (Kind::OptionalValue, DeValue::Boolean(b)) => {
            if *b {
                push(None)
            }
        }
        (Kind::List, DeValue::Array(items)) => {
            for item in items.iter() {
                push(Some(scalar(place, item)?));
            }
        }
        (Kind::Switch, _) => {
            return Err(place.err(value.span(), format!("'{flag}' is true or false")));
        }
        _ => push(Some(scalar(place, value)?)),
    }
    Ok(())
}

/// A string, integer or float as its flag would take it.
fn scalar(place: &Place<'_>, value: &Spanned<DeValue<'_>>) -> Result<String, String> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(|n| n.to_string())
            .map_err(|_| place.err(value.span(), "an integer out of range")),
        DeValue::Float(f) => Ok(f.as_str().to_string()),
        _ => Err(place.err(value.span(), "expected a string or a number here")),
    }
}

fn string(place: &Place<'_>, value: &Spanned<DeValue<'_>>, what: &str) -> Result<String, String> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(place.err(value.span(), format!("'{what}' is a string"))),
    }
}

/// A string or an array of strings.
fn strings(
    place: &Place<'_>,
    value: &Spanned<DeValue<'_>>,
    what: &str,
) -> Result<Vec<String>, String> {
    match value.get_ref() {
        DeValue::Array(items) => items.iter().map(|i| string(place, i, what)).collect(),
        _ => Ok(vec![string(place, value, what)?]),
    }
}

/// The tables of an array of tables (`[[stream]]`).
fn tables<'a, 'i>(
    place: &Place<'_>,
    value: &'a Spanned<DeValue<'i>>,
    what: &str,
) -> Result<Vec<(&'a DeTable<'i>, std::ops::Range<usize>)>, String> {
    let bad = || place.err(value.span(), format!("'{what}' is a table: [[{what}]]"));
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .map(|i| match i.get_ref() {
                DeValue::Table(t) => Ok((t, i.span())),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

fn streams(
    place: &Place<'_>,
    value: &Spanned<DeValue<'_>>,
    out: &mut FileConfig,
) -> Result<(), String> {
    for (table, span) in tables(place, value, "stream")? {
        let mut name = None;
        let mut source = None;
        let mut fallbacks = Vec::new();
        let mut on_demand = None;
        for (k, v) in table.iter() {
            match k.get_ref().as_ref() {
                "name" => name = Some(string(place, v, "name")?),
                "source" => source = Some(string(place, v, "source")?),
                "fallback" => fallbacks = strings(place, v, "fallback")?,
                "on_demand" | "on-demand" => {
                    on_demand = match v.get_ref() {
                        DeValue::Boolean(false) => None,
                        DeValue::Boolean(true) => Some(None),
                        _ => Some(Some(scalar(place, v)?)),
                    }
                }
                other => {
                    return Err(place.err(
                        k.span(),
                        format!(
                            "unknown key '{other}' in [[stream]] (name, source, fallback, \
                             on_demand)"
                        ),
                    ))
                }
            }
        }
        let name = name.ok_or_else(|| place.err(span.clone(), "a [[stream]] without a name"))?;
        crate::hub::check_name(&name).map_err(|e| place.err(span.clone(), e))?;
        let source = source
            .ok_or_else(|| place.err(span.clone(), format!("[[stream]] '{name}' has no source")))?;
        let mut push = |flag: &str, arg: String| out.args.push((flag.into(), arg.into()));
        push("stream", format!("--stream={name}={source}"));
        for f in fallbacks {
            push("fallback", format!("--fallback={name}={f}"));
        }
        match on_demand {
            Some(None) => push("on-demand", format!("--on-demand={name}")),
            Some(Some(linger)) => push("on-demand", format!("--on-demand={name}={linger}")),
            None => {}
        }
    }
    Ok(())
}

fn users(
    place: &Place<'_>,
    value: &Spanned<DeValue<'_>>,
    out: &mut FileConfig,
) -> Result<(), String> {
    for (table, span) in tables(place, value, "user")? {
        let mut name = None;
        let mut password = None;
        let mut streams = Vec::new();
        let mut admin = false;
        let mut max_viewers = None;
        for (k, v) in table.iter() {
            match k.get_ref().as_ref() {
                "name" => name = Some(string(place, v, "name")?),
                "password" => {
                    let p = string(place, v, "password")?;
                    password = Some(Password::parse(&p).map_err(|e| place.err(v.span(), e))?);
                }
                "streams" => {
                    streams = strings(place, v, "streams")?;
                    for p in &streams {
                        check_pattern(p).map_err(|e| place.err(v.span(), e))?;
                    }
                }
                "admin" => match v.get_ref() {
                    DeValue::Boolean(b) => admin = *b,
                    _ => return Err(place.err(v.span(), "'admin' is true or false")),
                },
                "max_viewers" | "max-viewers" => {
                    let n = scalar(place, v)?;
                    max_viewers = Some(
                        n.parse::<usize>()
                            .ok()
                            .filter(|n| (1..=100_000).contains(n))
                            .ok_or_else(|| {
                                place.err(v.span(), "'max_viewers' is a number from 1 to 100000")
                            })?,
                    );
                }
                other => {
                    return Err(place.err(
                        k.span(),
                        format!(
                            "unknown key '{other}' in [[user]] (name, password, streams, \
                             admin, max_viewers)"
                        ),
                    ))
                }
            }
        }
        let name = name.ok_or_else(|| place.err(span.clone(), "a [[user]] without a name"))?;
        if name.is_empty() || name.contains(':') || name.len() > 64 {
            return Err(place.err(
                span.clone(),
                format!("user name '{name}': 1 to 64 characters, no ':'"),
            ));
        }
        if out.users.iter().any(|u| u.name == name) {
            return Err(place.err(span.clone(), format!("the user '{name}' is there twice")));
        }
        let password = password
            .ok_or_else(|| place.err(span.clone(), format!("user '{name}' has no password")))?;
        if password.is_plain() {
            out.notes.push(format!(
                "{}: user '{name}' has a plain-text password; store a hash instead \
                 (htpasswd -nbB {name} PASSWORD)",
                place.at(span.start)
            ));
        }
        if streams.is_empty() && !admin {
            out.notes.push(format!(
                "{}: user '{name}' may see no stream (no 'streams', not an admin)",
                place.at(span.start)
            ));
        }
        out.users.push(User {
            name,
            password,
            streams,
            admin,
            max_viewers,
        });
    }
    Ok(())
}

fn signing(
    place: &Place<'_>,
    value: &Spanned<DeValue<'_>>,
    out: &mut FileConfig,
) -> Result<(), String> {
    let DeValue::Table(table) = value.get_ref() else {
        return Err(place.err(value.span(), "'signing' is a table: [signing]"));
    };
    for (k, v) in table.iter() {
        match k.get_ref().as_ref() {
            "key_file" | "key-file" => {
                for f in strings(place, v, "key_file")? {
                    let p = Path::new(&f);
                    // Relative to the config file, as people expect of files beside it.
                    let p = match place.file.parent() {
                        Some(dir) if p.is_relative() => dir.join(p),
                        _ => p.to_path_buf(),
                    };
                    let bytes = std::fs::read(&p).map_err(|e| {
                        place.err(v.span(), format!("cannot read {}: {e}", p.display()))
                    })?;
                    let key = crate::signing::key_from_file_text(&bytes)
                        .map_err(|e| place.err(v.span(), format!("{}: {e}", p.display())))?;
                    out.keys.push(key);
                }
            }
            other => {
                return Err(place.err(
                    k.span(),
                    format!("unknown key '{other}' in [signing] (key_file)"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        parse(text, Path::new("t.toml"))
            .unwrap()
            .args
            .into_iter()
            .map(|(_, a)| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn keys_become_flags() {
        let got = args(
            r#"
http = "0.0.0.0:8080"
max_clients = 200
fps = 7.5
allow_host = ["a.test", "b.test"]
status_details = true
quiet = false
on-demand = 12

[[stream]]
name = "door"
source = "http://admin:pw@10.0.0.20/video.cgi"
fallback = ["testsrc"]
on_demand = 10

[[stream]]
name = "yard"
source = "testsrc"
on_demand = true
"#,
        );
        assert_eq!(
            got,
            // Top-level keys in name order (the parser's), which flags do not depend on.
            [
                "--allow-host=a.test",
                "--allow-host=b.test",
                "--fps=7.5",
                "--http=0.0.0.0:8080",
                "--max-clients=200",
                "--on-demand=12",
                "--status-details",
                "--stream=door=http://admin:pw@10.0.0.20/video.cgi",
                "--fallback=door=testsrc",
                "--on-demand=door=10",
                "--stream=yard=testsrc",
                "--on-demand=yard",
            ]
        );
    }

    #[test]
    fn errors_say_where_and_never_echo_a_value() {
        for (text, want) in [
            (
                "http = \"x\"\nmax_clientz = 5\n",
                "t.toml:2:1: unknown key 'max_clientz'",
            ),
            ("a = [\n", "t.toml:1:6: unclosed array"),
            (
                "[[stream]]\nsource = \"testsrc\"\n",
                "t.toml:1:1: a [[stream]] without a name",
            ),
            (
                "[[user]]\nname = \"a\"\npassword = \"hunter2-secret\"\n",
                "t.toml:3:12: not a bcrypt hash",
            ),
            (
                "status_details = \"yes\"\n",
                "t.toml:1:18: 'status-details' is true or false",
            ),
            (
                "[[stream]]\nname = \"a b\"\nsource = \"testsrc\"\n",
                "t.toml:1:1:",
            ),
        ] {
            let e = parse(text, Path::new("t.toml")).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        // The parser's own message: our place, not its quote of the line.
        let e = parse("auth = \"u:hunter2\"\nx = = 1\n", Path::new("t.toml")).unwrap_err();
        assert!(e.starts_with("t.toml:2:") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn users_and_their_warnings() {
        let c = parse(
            r#"
[[user]]
name = "alice"
password = "plain:pw"
streams = ["door", "garden-*"]
max_viewers = 3

[[user]]
name = "root"
password = "$2y$05$NViGYnmeD75YWfENq1y5f.ggFZqSmyD1umkQRuWcRMM4cysQxnIie"
admin = true
"#,
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.users[0].streams, ["door", "garden-*"]);
        assert_eq!(c.users[0].max_viewers, Some(3));
        assert!(c.users[1].admin);
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(c.notes[0].contains("plain-text"));
    }
}
