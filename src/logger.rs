//! A ten-line stderr logger behind the `log` facade.
//!
//! One line per event: `2026-11-24T08:55:00.123Z INFO  upstream connected from 127.0.0.1:40312`.
//! Timestamps are UTC, computed here to avoid a date-time dependency.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        // Dependencies (ureq) log protocol details: shown only at debug level and below.
        meta.level() <= self.level
            && (meta.target().starts_with("mjpeg_relay") || self.level >= log::LevelFilter::Debug)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{} {:<5} {}\n", utc_now(), record.level(), record.args());
        // One write per line so lines from different threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger. Call once, first thing in `main`.
pub fn init(level: log::LevelFilter) {
    let logger = Box::leak(Box::new(StderrLogger { level }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for now.
pub fn utc_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// One kind of event that can repeat fast (a refused connection, a failed login, a dropped
/// part), logged without flooding: the first at once, then at most one summary line per
/// [`Throttled::PERIOD`] while it goes on, saying how many were not logged. Hostile clients
/// and broken upstreams cannot turn the log into the attack.
#[derive(Debug, Default)]
pub struct Throttled {
    /// When the last line was written, and events since.
    state: parking_lot::Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    pub const PERIOD: Duration = Duration::from_secs(10);

    pub const fn new() -> Throttled {
        Throttled {
            state: parking_lot::const_mutex((None, 0)),
        }
    }

    /// Counts one event; calls `write` when a line is due, with what was not logged since the
    /// last line (nothing, for the first).
    pub fn note(&self, write: impl FnOnce(Suppressed)) {
        let mut st = self.state.lock();
        let now = Instant::now();
        match st.0 {
            Some(t) if now.duration_since(t) < Self::PERIOD => st.1 += 1,
            last => {
                let suppressed = Suppressed {
                    count: st.1,
                    over: last.map_or(Duration::ZERO, |t| now.duration_since(t)),
                };
                *st = (Some(now), 0);
                drop(st);
                write(suppressed);
            }
        }
    }
}

/// Events a [`Throttled`] line stands for beyond its own: how many, over how long (the time
/// since the last line, which may be much longer than the period when they stopped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Suppressed {
    pub count: u64,
    pub over: Duration,
}

/// `" (and 12 more in the last 23 s)"`, or nothing.
pub fn more(s: Suppressed) -> String {
    if s.count == 0 {
        String::new()
    } else {
        format!(
            " (and {} more in the last {} s)",
            s.count,
            s.over.as_secs().max(1)
        )
    }
}

/// An I/O error as a person reads it: `connection refused (nothing listens there)` rather
/// than `Connection refused (os error 111)`.
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    if e.get_ref().is_some() {
        return e.to_string(); // ours, already worded for a person
    }
    match e.kind() {
        ConnectionRefused => "connection refused (nothing listens there)".into(),
        TimedOut | WouldBlock => "timed out".into(),
        ConnectionReset => "connection reset by the peer".into(),
        NotFound => "no such file or socket".into(),
        PermissionDenied => "permission denied".into(),
        HostUnreachable | NetworkUnreachable => "unreachable".into(),
        _ => {
            // std's text without its "(os error N)" tail.
            let text = e.to_string();
            match text.rfind(" (os error ") {
                Some(i) => text.get(..i).unwrap_or(&text).to_string(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn throttled_writes_the_first_then_nothing_within_the_period() {
        let t = super::Throttled::new();
        let mut lines = Vec::new();
        for _ in 0..100 {
            t.note(|n| lines.push(n));
        }
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].count, 0);
        assert_eq!(super::more(lines[0]), "");
        // Issue 22: the count says over how long, not "the last 10 s" whatever the gap.
        let s = super::Suppressed {
            count: 7,
            over: std::time::Duration::from_secs(23),
        };
        assert_eq!(super::more(s), " (and 7 more in the last 23 s)");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
