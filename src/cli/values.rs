//! The value syntaxes flags share: seconds, numbers in a range, byte sizes, pixel counts,
//! `WxH`, and the first line of a secret's file.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

/// A number in `range`; `what` names it in the message ("a number", "a rate").
pub fn number<T>(v: &str, range: RangeInclusive<T>, what: &str) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    v.parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "'{v}' is not {what} from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// Seconds from `min` to `max`, fractions allowed.
pub fn seconds(v: &str, min: f64, max: f64) -> Result<Duration, String> {
    number(v, min..=max, "seconds").map(Duration::from_secs_f64)
}

pub fn check_token(v: &str) -> Result<(), String> {
    if v.len() < 8 || v.contains(|c: char| c.is_whitespace() || c == '&' || c == '#') {
        return Err("use at least 8 characters, without spaces, & or #".into());
    }
    Ok(())
}

/// The first line of a secret's file that is not empty or a `#` comment, trimmed (the rule
/// `--auth-file` and `--token-file` share); `None` when there is none.
pub fn first_line(path: &std::path::Path) -> Result<Option<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string))
}

/// `WIDTHxHEIGHT`, each from 16 to 8192.
pub fn parse_size(v: &str) -> Option<(u16, u16)> {
    let (w, h) = v.split_once(['x', 'X'])?;
    let ok = |n: &str| n.parse::<u16>().ok().filter(|n| (16..=8192).contains(n));
    Some((ok(w)?, ok(h)?))
}

/// `12M`, `12000000` or `4096x3072`: a number of pixels (K and M are thousands and millions,
/// as megapixels are counted).
pub fn parse_pixels(v: &str) -> Option<usize> {
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

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("8M"), Some(8 << 20));
        assert_eq!(parse_bytes("64KiB"), Some(64 << 10));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("x"), None);
    }

    #[test]
    fn numbers_and_seconds_name_their_range() {
        assert_eq!(number("7", 1..=10, "a number"), Ok(7));
        let e = number("0", 1..=10, "a number").unwrap_err();
        assert_eq!(e, "'0' is not a number from 1 to 10");
        assert_eq!(seconds("0.5", 0.1, 3600.0), Ok(Duration::from_millis(500)));
        let e = seconds("x", 0.1, 3600.0).unwrap_err();
        assert_eq!(e, "'x' is not seconds from 0.1 to 3600");
    }
}
