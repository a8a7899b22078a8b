//! How long a fetched key set stays fresh: what the response declares (RFC 9111
//! `Cache-Control: max-age`, less `Age`; else `Expires` against `Date`), clamped to the issuer's
//! `min_refresh..=max_refresh`.

use reqwest::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, HeaderMap};
use std::time::{Duration, SystemTime};

/// Used when the response declares nothing (then clamped like any other).
pub const UNDECLARED: Duration = Duration::from_secs(3600);

/// The freshness `headers` declare, or `None` when they declare none. `no-store`, `no-cache`, an
/// unreadable `max-age` and an unreadable `Expires` all declare zero (stale at once), as RFC 9111
/// asks of a cache.
pub fn declared(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else {
            return Some(Duration::ZERO);
        };
        for directive in text.split(',') {
            let directive = directive.trim();
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                let seconds = argument.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                max_age = Some(Duration::from_secs(seconds));
            }
        }
    }
    if let Some(max_age) = max_age {
        let age = headers
            .get(AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        return Some(max_age.saturating_sub(Duration::from_secs(age)));
    }
    let expires = headers.get(EXPIRES)?;
    let Some(expires) = expires
        .to_str()
        .ok()
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
    else {
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
        .unwrap_or(now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// When to fetch again after a good response: the declared freshness (or [`UNDECLARED`]) within
/// `min..=max`.
pub fn refresh_after(declared: Option<Duration>, min: Duration, max: Duration) -> Duration {
    declared.unwrap_or(UNDECLARED).clamp(min, max.max(min))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(reqwest::header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(86_400);

    fn at(text: &str) -> SystemTime {
        httpdate::parse_http_date(text).unwrap()
    }

    #[test]
    fn max_age_is_read_among_other_directives_and_less_its_age() {
        let now = SystemTime::now();
        let h = headers(&[(CACHE_CONTROL, "public, max-age=600, must-revalidate")]);
        assert_eq!(declared(&h, now), Some(Duration::from_secs(600)));
        let h = headers(&[(CACHE_CONTROL, "Max-Age=\"300\""), (AGE, "100")]);
        assert_eq!(declared(&h, now), Some(Duration::from_secs(200)));
        let h = headers(&[(CACHE_CONTROL, "max-age=60"), (AGE, "600")]);
        assert_eq!(declared(&h, now), Some(Duration::ZERO));
        // Several Cache-Control headers are one list.
        let h = headers(&[(CACHE_CONTROL, "public"), (CACHE_CONTROL, "max-age=42")]);
        assert_eq!(declared(&h, now), Some(Duration::from_secs(42)));
    }

    #[test]
    fn no_store_no_cache_and_unreadable_values_are_stale_at_once() {
        let now = SystemTime::now();
        for value in [
            "no-store",
            "no-cache, max-age=600",
            "max-age=soon",
            "max-age",
        ] {
            let h = headers(&[(CACHE_CONTROL, value)]);
            assert_eq!(declared(&h, now), Some(Duration::ZERO), "{value}");
        }
        let h = headers(&[(EXPIRES, "0")]);
        assert_eq!(declared(&h, now), Some(Duration::ZERO));
    }

    #[test]
    fn expires_counts_from_the_date_header_or_now() {
        let h = headers(&[
            (EXPIRES, "Thu, 03 Dec 2026 07:00:00 GMT"),
            (DATE, "Thu, 03 Dec 2026 06:00:00 GMT"),
        ]);
        assert_eq!(
            declared(&h, SystemTime::UNIX_EPOCH),
            Some(Duration::from_secs(3600))
        );
        let h = headers(&[(EXPIRES, "Thu, 03 Dec 2026 06:30:00 GMT")]);
        assert_eq!(
            declared(&h, at("Thu, 03 Dec 2026 06:00:00 GMT")),
            Some(Duration::from_secs(1800))
        );
        // In the past: stale.
        assert_eq!(
            declared(&h, at("Thu, 03 Dec 2026 08:00:00 GMT")),
            Some(Duration::ZERO)
        );
        // max-age wins over Expires.
        let h = headers(&[
            (CACHE_CONTROL, "max-age=10"),
            (EXPIRES, "Thu, 03 Dec 2026 06:30:00 GMT"),
        ]);
        assert_eq!(
            declared(&h, SystemTime::now()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(declared(&HeaderMap::new(), SystemTime::now()), None);
    }

    #[test]
    fn the_refresh_is_clamped_to_the_configured_bounds() {
        assert_eq!(refresh_after(Some(Duration::ZERO), MIN, MAX), MIN);
        assert_eq!(
            refresh_after(Some(Duration::from_secs(600)), MIN, MAX),
            Duration::from_secs(600)
        );
        assert_eq!(
            refresh_after(Some(Duration::from_secs(10_000_000)), MIN, MAX),
            MAX
        );
        assert_eq!(refresh_after(None, MIN, MAX), UNDECLARED);
        assert_eq!(
            refresh_after(None, MIN, Duration::from_secs(120)),
            Duration::from_secs(120)
        );
    }
}
