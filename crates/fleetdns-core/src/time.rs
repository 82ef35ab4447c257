//! Kubernetes timestamps (RFC 3339, UTC) as Unix seconds, without a date-time dependency.

use std::fmt;

/// Seconds since the Unix epoch. Kubernetes `creationTimestamp`s have second precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an RFC 3339 timestamp like 2024-05-01T12:00:00Z")]
pub struct TimestampError(String);

impl Timestamp {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError(s.to_owned());
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return Err(err());
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let part = s.get(r).ok_or_else(err)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err());
            }
            part.parse::<i64>().map_err(|_| err())
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
            return Err(err());
        }
        if second > 60 {
            return Err(err());
        }
        let mut rest = &s[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err());
            }
            rest = &frac[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                if rest.as_bytes()[3] != b':' {
                    return Err(err());
                }
                let oh: i64 = rest[1..3].parse().map_err(|_| err())?;
                let om: i64 = rest[4..6].parse().map_err(|_| err())?;
                sign * (oh * 3600 + om * 60)
            }
            _ => return Err(err()),
        };
        let days = days_from_civil(year, month, day);
        Ok(Self(
            days * 86_400 + hour * 3600 + minute * 60 + second - offset,
        ))
    }

    /// Now, from the system clock.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Self(secs)
    }
}

/// Howard Hinnant's days-from-civil: days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Civil-from-days, the inverse of the above.
        let z = self.0.div_euclid(86_400) + 719_468;
        let secs = self.0.rem_euclid(86_400);
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_rfc3339() {
        let t = Timestamp::parse_rfc3339("2024-05-01T12:30:15Z").unwrap();
        assert_eq!(t.0, 1_714_566_615);
        assert_eq!(t.to_string(), "2024-05-01T12:30:15Z");
        let epoch = Timestamp::parse_rfc3339("1970-01-01T00:00:00Z").unwrap();
        assert_eq!(epoch.0, 0);
        let off = Timestamp::parse_rfc3339("2024-05-01T14:30:15.123+02:00").unwrap();
        assert_eq!(off, t);
        let leap = Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").unwrap();
        assert_eq!(leap.to_string(), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01T12:30:15",
            "2024-05-01T1a:30:15Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
