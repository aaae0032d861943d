//! Wall-clock times as HTTP and file names write them: `Last-Modified` (IMF-fixdate, RFC 9110)
//! and the `YYYYMMDD-HHMMSS` of a clip's file name, both UTC. No time zone database: UTC only.

use std::time::{SystemTime, UNIX_EPOCH};

/// Year, month (1-12), day (1-31), hour, minute, second and weekday (0 = Sunday) of `t`, UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (year, month, day) = crate::logger::civil_from_days(days);
    let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
    (
        year,
        month,
        day,
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        weekday,
    )
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(t);
    format!(
        "{}, {d:02} {} {y} {h:02}:{mi:02}:{s:02} GMT",
        DAYS[wd as usize % 7],
        MONTHS[(mo as usize + 11) % 12]
    )
}

/// `19941106-084937`, for file names.
pub fn file_stamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// `1994.123456`-style seconds since the epoch, as `X-Timestamp` writes them.
pub fn epoch_seconds(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_as_http_and_file_names_write_them() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777); // RFC 9110's example
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(file_stamp(t), "19941106-084937");
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        // A leap day, and the turn of a century that is a leap year.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(file_stamp(leap), "20000229-000000");
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            epoch_seconds(UNIX_EPOCH + Duration::from_micros(1_500_001)),
            "1.500001"
        );
    }
}
