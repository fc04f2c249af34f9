//! Timestamps as HTTP (`Last-Modified`) and S3 (ISO 8601) want them.

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Splits epoch seconds into (days, hour, minute, second, milliseconds).
fn split(epoch: f64) -> (i64, i64, i64, i64, i64) {
    let ms = (epoch * 1000.0).floor() as i64;
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    (
        days,
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        ms.rem_euclid(1000),
    )
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) from seconds since the epoch.
///
/// ```
/// assert_eq!(parts::gateway::dates::http_date(784111777.0), "Sun, 06 Nov 1994 08:49:37 GMT");
/// ```
pub fn http_date(epoch: f64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, h, m, s, _) = split(epoch);
    let (year, month, day) = civil(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    format!(
        "{weekday}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        MONTHS[month as usize - 1]
    )
}

/// An ISO 8601 UTC timestamp with milliseconds (`2009-10-12T17:50:30.000Z`), as S3 lists.
///
/// ```
/// assert_eq!(parts::gateway::dates::iso8601(1255369830.0), "2009-10-12T17:50:30.000Z");
/// ```
pub fn iso8601(epoch: f64) -> String {
    let (days, h, m, s, ms) = split(epoch);
    let (year, month, day) = civil(days);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}
