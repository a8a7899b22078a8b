//! Instants and lifetimes in the units tokens use.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn from_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(1000))
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds, as JWT `iat`/`exp` want them.
    pub const fn seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub const fn plus(self, ttl: Ttl) -> Self {
        Self(
            self.0
                .saturating_add((ttl.seconds() as i64).saturating_mul(1000)),
        )
    }

    /// RFC 3339 in UTC with millisecond precision.
    pub fn rfc3339(self) -> String {
        let secs = self.0.div_euclid(1000);
        let millis = self.0.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

impl Timestamp {
    /// Parses RFC 3339 in UTC (`2026-12-02T15:04:05Z`, optionally `.123` milliseconds, `Z` or
    /// `+00:00`), or a whole number of milliseconds since the epoch.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(millis) = text.parse::<i64>() {
            return Ok(Self(millis));
        }
        let bad = || format!("`{text}` is not an RFC 3339 UTC time (2026-12-02T15:04:05Z)");
        let rest = text
            .strip_suffix('Z')
            .or_else(|| text.strip_suffix("+00:00"))
            .ok_or_else(bad)?;
        let (date, time) = rest.split_once(['T', 't', ' ']).ok_or_else(bad)?;
        let mut date = date.splitn(3, '-');
        let field = |part: Option<&str>, len: usize| -> Result<i64, String> {
            part.filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<i64>().ok())
                .ok_or_else(bad)
        };
        let (year, month, day) = (
            field(date.next(), 4)?,
            field(date.next(), 2)?,
            field(date.next(), 2)?,
        );
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        let mut clock = clock.splitn(3, ':');
        let (hour, minute, second) = (
            field(clock.next(), 2)?,
            field(clock.next(), 2)?,
            field(clock.next(), 2)?,
        );
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
            || fraction.len() > 9
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let millis = format!("{fraction:0<3}")
            .get(..3)
            .and_then(|m| m.parse::<i64>().ok())
            .unwrap_or(0);
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
        Ok(Self(seconds * 1000 + millis))
    }
}

/// Howard Hinnant's civil-to-days algorithm (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A positive lifetime in whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ttl(u32);

impl Ttl {
    pub const fn from_seconds(seconds: u32) -> Self {
        Self(seconds)
    }

    pub const fn seconds(self) -> u32 {
        self.0
    }

    /// Parses `90`, `90s`, `15m`, `2h` or `1d`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => text.split_at(at),
            None => (text, "s"),
        };
        let value: u32 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a duration such as `90s`, `15m` or `2h`"))?;
        let factor = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("`{text}` has an unknown unit; use s, m, h or d")),
        };
        let seconds = value
            .checked_mul(factor)
            .ok_or_else(|| format!("`{text}` is too long"))?;
        if seconds == 0 {
            return Err("a lifetime must be longer than zero".to_owned());
        }
        Ok(Self(seconds))
    }
}

/// `#[serde(with = "crate::time::rfc3339")]`: a [`Timestamp`] as RFC 3339 text on the wire (what a
/// person reads), read back by [`Timestamp::parse`].
pub mod rfc3339 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&at.rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(
            Timestamp::from_millis(1_700_000_000_123).rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn parses_durations() {
        assert_eq!(Ttl::parse("15m"), Ok(Ttl::from_seconds(900)));
        assert_eq!(Ttl::parse("90"), Ok(Ttl::from_seconds(90)));
        assert!(Ttl::parse("0s").is_err());
        assert!(Ttl::parse("5y").is_err());
        assert!(Ttl::parse("").is_err());
    }

    #[test]
    fn rfc3339_reads_back_what_it_writes() {
        for millis in [0, 1_700_000_000_123, 951_782_400_000, -86_400_000] {
            let at = Timestamp::from_millis(millis);
            assert_eq!(Timestamp::parse(&at.rfc3339()), Ok(at));
        }
        assert_eq!(
            Timestamp::parse("2023-11-14T22:13:20Z"),
            Ok(Timestamp::from_seconds(1_700_000_000))
        );
        assert_eq!(
            Timestamp::parse("1700000000123"),
            Ok(Timestamp::from_millis(1_700_000_000_123))
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20+02:00",
            "x",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }
}
