//! The log line's timestamp, written digit by digit.

/// `now` in UTC with microseconds, `2026-12-04T15:24:44.485156Z`: what tracing_subscriber's
/// `SystemTime` writes, without the formatting machinery (which cost 2.4 k instructions a line).
pub fn push_rfc3339(line: &mut String, now: std::time::SystemTime) {
    let since = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = secs % 86_400;
    let parts = [
        (u64::from(year), 4),
        (u64::from(month), 2),
        (u64::from(day), 2),
        (in_day / 3_600, 2),
        (in_day % 3_600 / 60, 2),
        (in_day % 60, 2),
        (u64::from(since.subsec_micros()), 6),
    ];
    let separators = ['-', '-', 'T', ':', ':', '.', 'Z'];
    for ((value, width), separator) in parts.into_iter().zip(separators) {
        let mut digits = [b'0'; 6];
        let mut rest = value;
        for digit in digits[..width].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        line.extend(digits[..width].iter().map(|&d| char::from(d)));
        line.push(separator);
    }
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (u32::try_from(year).unwrap_or(u32::MAX), month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339_with_microseconds() {
        use std::time::{Duration, UNIX_EPOCH};
        for secs in
            [0, 951_782_400, 1_709_164_800, 1_709_251_199, 2_147_483_647, 4_107_542_400, 1_796_399_084]
        {
            for micros in [0, 7, 485_156, 999_999] {
                let at = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
                let mut line = String::new();
                push_rfc3339(&mut line, at);
                let expected =
                    chrono::DateTime::<chrono::Utc>::from(at).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                assert_eq!(line, expected);
            }
        }
        // Every day of four years around a leap year and a century.
        for day in (0..4 * 366).chain(47_400..47_400 + 4 * 366) {
            let at = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 86_399);
            let mut line = String::new();
            push_rfc3339(&mut line, at);
            let expected =
                chrono::DateTime::<chrono::Utc>::from(at).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            assert_eq!(line, expected);
        }
    }
}
