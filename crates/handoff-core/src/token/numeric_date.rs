//! RFC 7519 NumericDate (`exp`, `nbf`, `iat`): one strict parser and one time check for every
//! token Handoff accepts. A NumericDate is a JSON number of seconds since the epoch and may have a
//! fraction; a string, a bool, null, an object, a negative number or one past year 9999 is refused
//! rather than ignored, so a claim that cannot be read never means "no limit".

use super::jws::TokenError;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// Seconds since the epoch, possibly fractional, within `0..=MAX_NUMERIC_DATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NumericDate {
    /// The whole seconds (the floor).
    seconds: i64,
    /// Whether the value had a fraction, so the ceiling is one more second.
    fractional: bool,
}

impl NumericDate {
    /// A whole number of seconds, if in range.
    pub fn from_seconds(seconds: i64) -> Option<Self> {
        (0..=MAX_NUMERIC_DATE).contains(&seconds).then_some(Self {
            seconds,
            fractional: false,
        })
    }

    /// A JSON number's value, if finite and in range.
    pub fn from_f64(value: f64) -> Option<Self> {
        // INVARIANT: the range check comes first, so both casts below are exact.
        if !value.is_finite() || value < 0.0 || value > MAX_NUMERIC_DATE as f64 {
            return None;
        }
        let floor = value.floor();
        #[expect(
            clippy::cast_possible_truncation,
            reason = "`floor` is a whole number in 0..=MAX_NUMERIC_DATE, exactly representable"
        )]
        let seconds = floor as i64;
        Some(Self {
            seconds,
            fractional: value > floor,
        })
    }

    /// Reads a claim's JSON value; anything but an in-range number is refused.
    pub fn from_json(value: &Value) -> Option<Self> {
        let Value::Number(number) = value else {
            return None;
        };
        if let Some(seconds) = number.as_i64() {
            return Self::from_seconds(seconds);
        }
        if number.as_u64().is_some() {
            return None; // above i64::MAX: far past the range
        }
        number.as_f64().and_then(Self::from_f64)
    }

    /// The latest whole second not after the date.
    pub fn floor(self) -> i64 {
        self.seconds
    }

    /// The earliest whole second not before the date.
    pub fn ceil(self) -> i64 {
        self.seconds + i64::from(self.fractional)
    }
}

impl Serialize for NumericDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Handoff mints whole seconds only; a parsed fraction is not re-emitted.
        serializer.serialize_i64(self.seconds)
    }
}

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumericDateVisitor;

        impl Visitor<'_> for NumericDateVisitor {
            type Value = NumericDate;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a NumericDate: seconds since the epoch, a number up to year 9999")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                NumericDate::from_seconds(v).ok_or_else(|| E::custom("NumericDate out of range"))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(NumericDate::from_seconds)
                    .ok_or_else(|| E::custom("NumericDate out of range"))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                NumericDate::from_f64(v).ok_or_else(|| E::custom("NumericDate out of range"))
            }
        }

        deserializer.deserialize_any(NumericDateVisitor)
    }
}

/// Deserializes a NumericDate claim into whole seconds (its floor), for claim structs whose
/// `exp`/`iat` fields are plain seconds. The time check itself reads [`TokenTimes`].
pub fn floor_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    NumericDate::deserialize(deserializer).map(NumericDate::floor)
}

/// Deserializes an optional NumericDate claim (`#[serde(default, deserialize_with = ...)]`):
/// absent is `None`, but a present `null` is refused like any other value that is not a
/// NumericDate, never read as "no limit" (serde's `Option` would take `null` for absent).
pub fn present_or_refused<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<NumericDate>, D::Error> {
    NumericDate::deserialize(deserializer).map(Some)
}

/// How much clock skew a door tolerates, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leeway {
    /// Allowed past `exp` and before `nbf`.
    pub expiry: i64,
    /// How far in the future `iat` may be.
    pub issued_at: i64,
}

impl Leeway {
    /// No skew at all.
    pub const NONE: Self = Self {
        expiry: 0,
        issued_at: 0,
    };
}

/// A token's time claims, each parsed strictly when present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenTimes {
    pub exp: Option<NumericDate>,
    pub nbf: Option<NumericDate>,
    pub iat: Option<NumericDate>,
}

impl TokenTimes {
    /// Reads `exp`, `nbf` and `iat` from a claims object. A claim that is present but not a
    /// NumericDate (a string, a bool, null, out of range) is refused, never ignored.
    pub fn from_claims(claims: &Value) -> Result<Self, TokenError> {
        let read = |name: &'static str| -> Result<Option<NumericDate>, TokenError> {
            claims.get(name).map_or(Ok(None), |value| {
                NumericDate::from_json(value)
                    .map(Some)
                    .ok_or(TokenError::InvalidTime(name))
            })
        };
        Ok(Self {
            exp: read("exp")?,
            nbf: read("nbf")?,
            iat: read("iat")?,
        })
    }

    /// `exp` is required and must not have passed; `nbf`, when present, must have come; `iat`,
    /// when present, must not be further ahead than `leeway.issued_at`.
    pub fn check(&self, now: i64, leeway: Leeway) -> Result<(), TokenError> {
        let exp = self.exp.ok_or(TokenError::MissingClaim("exp"))?;
        self.check_unexpired(exp, now, leeway)?;
        self.check_started(now, leeway)
    }

    /// As [`check`](Self::check), for tokens whose `exp` is optional.
    pub fn check_started(&self, now: i64, leeway: Leeway) -> Result<(), TokenError> {
        if let Some(exp) = self.exp {
            self.check_unexpired(exp, now, leeway)?;
        }
        // `now` is whole seconds: now < nbf exactly when now < ceil(nbf).
        if let Some(nbf) = self.nbf
            && now.saturating_add(leeway.expiry) < nbf.ceil()
        {
            return Err(TokenError::NotYetValid);
        }
        if let Some(iat) = self.iat
            && now.saturating_add(leeway.issued_at) < iat.ceil()
        {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(())
    }

    fn check_unexpired(
        &self,
        exp: NumericDate,
        now: i64,
        leeway: Leeway,
    ) -> Result<(), TokenError> {
        // `now` is whole seconds: now > exp exactly when now > floor(exp).
        if now > exp.floor().saturating_add(leeway.expiry) {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn date(value: Value) -> Option<NumericDate> {
        NumericDate::from_json(&value)
    }

    #[test]
    fn accepts_whole_and_fractional_seconds() {
        let whole = date(json!(1_700_000_000)).unwrap();
        assert_eq!(
            (whole.floor(), whole.ceil()),
            (1_700_000_000, 1_700_000_000)
        );
        let fractional = date(json!(1_700_000_000.5)).unwrap();
        assert_eq!(
            (fractional.floor(), fractional.ceil()),
            (1_700_000_000, 1_700_000_001)
        );
        assert_eq!(date(json!(1e10)).unwrap().floor(), 10_000_000_000);
        assert_eq!(date(json!(0)).unwrap().floor(), 0);
    }

    #[test]
    fn refuses_what_is_not_a_numeric_date() {
        for value in [
            json!("1700000000"),
            json!(true),
            json!(null),
            json!({"seconds": 1}),
            json!([1]),
            json!(-1),
            json!(-0.5),
            json!(1e300),
            json!(u64::MAX),
            json!(MAX_NUMERIC_DATE + 1),
        ] {
            assert_eq!(date(value.clone()), None, "{value}");
        }
        assert_eq!(NumericDate::from_f64(f64::NAN), None);
        assert_eq!(NumericDate::from_f64(f64::INFINITY), None);
    }

    #[test]
    fn deserializes_like_it_reads_json() {
        let parsed: NumericDate = serde_json::from_str("1700000000.25").unwrap();
        assert_eq!(parsed.ceil(), 1_700_000_001);
        assert!(serde_json::from_str::<NumericDate>("\"1700000000\"").is_err());
        assert!(serde_json::from_str::<NumericDate>("-3").is_err());
        assert!(serde_json::from_str::<NumericDate>("18446744073709551615").is_err());
        assert_eq!(serde_json::to_string(&parsed).unwrap(), "1700000000");
    }

    #[test]
    fn a_claim_that_is_present_but_unreadable_is_refused() {
        let claims = json!({"exp": 100, "nbf": "200"});
        assert_eq!(
            TokenTimes::from_claims(&claims),
            Err(TokenError::InvalidTime("nbf"))
        );
        let claims = json!({"exp": 100, "iat": 1e300});
        assert_eq!(
            TokenTimes::from_claims(&claims),
            Err(TokenError::InvalidTime("iat"))
        );
    }

    #[test]
    fn a_fractional_expiry_lasts_until_its_second_passes() {
        let times = TokenTimes::from_claims(&json!({"exp": 100.5})).unwrap();
        assert_eq!(times.check(100, Leeway::NONE), Ok(()));
        assert_eq!(times.check(101, Leeway::NONE), Err(TokenError::Expired));
    }

    #[test]
    fn a_fractional_not_before_is_not_rounded_down() {
        let times = TokenTimes::from_claims(&json!({"exp": 1000, "nbf": 100.5})).unwrap();
        assert_eq!(times.check(100, Leeway::NONE), Err(TokenError::NotYetValid));
        assert_eq!(times.check(101, Leeway::NONE), Ok(()));
    }

    #[test]
    fn an_issue_time_ahead_of_the_leeway_is_refused() {
        let leeway = Leeway {
            expiry: 0,
            issued_at: 60,
        };
        let times = TokenTimes::from_claims(&json!({"exp": 1000, "iat": 160.5})).unwrap();
        assert_eq!(times.check(100, leeway), Err(TokenError::IssuedInFuture));
        assert_eq!(times.check(101, leeway), Ok(()));
    }

    #[test]
    fn expiry_is_required_by_check_but_not_by_check_started() {
        let times = TokenTimes::from_claims(&json!({"iat": 100})).unwrap();
        assert_eq!(
            times.check(100, Leeway::NONE),
            Err(TokenError::MissingClaim("exp"))
        );
        assert_eq!(times.check_started(100, Leeway::NONE), Ok(()));
    }
}
