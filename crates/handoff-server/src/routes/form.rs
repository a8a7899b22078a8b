//! Strict parsing of `application/x-www-form-urlencoded` OAuth requests: one value per parameter.

use crate::error::ApiError;
use axum::http::{HeaderMap, header};
use std::collections::HashMap;

/// The parameters of one form body, each given at most once, each valid UTF-8.
pub struct FormParams(HashMap<String, String>);

/// Splits and decodes `name=value&...` strictly: a name or value whose bytes, once
/// percent-decoded, are not UTF-8 is refused rather than replaced with U+FFFD, so two different
/// byte strings never become one value in a token, an audit record or an approval's hash.
///
/// An exchange's body is mostly two tokens, a few KiB: the separators and the escapes are found
/// with `memchr`'s vector scans rather than a closure per byte.
fn pairs(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let mut start = 0;
    memchr::memchr_iter(b'&', body)
        .chain(std::iter::once(body.len()))
        .map(|end| {
            let pair = body.get(start..end).unwrap_or_default();
            start = end + 1;
            pair
        })
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match memchr::memchr(b'=', pair) {
                Some(at) => (pair.get(..at), pair.get(at + 1..)),
                None => (Some(pair), None),
            };
            Ok((
                decode(name.unwrap_or_default())?,
                decode(value.unwrap_or_default())?,
            ))
        })
        .collect()
}

/// One percent-encoded component (`+` is a space), decoded only if it is UTF-8.
fn decode(component: &[u8]) -> Result<String, ApiError> {
    let not_utf8 =
        || ApiError::invalid_request("the form body is not UTF-8 once percent-decoded".to_owned());
    // Tokens and most values have nothing to decode: checked as UTF-8 and copied once.
    if memchr::memchr2(b'%', b'+', component).is_none() {
        return std::str::from_utf8(component)
            .map(str::to_owned)
            .map_err(|_| not_utf8());
    }
    String::from_utf8(unescape(component)).map_err(|_| not_utf8())
}

/// `+` as a space and `%XX` as the byte it names, in one pass into a buffer of the input's
/// length; a `%` not followed by two hex digits stays a `%`, as in the `percent-encoding` crate
/// (the test below holds the two to the same bytes), without that crate's byte iterator and the
/// copy that first turned `+` into spaces.
fn unescape(component: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let mut out = Vec::with_capacity(component.len());
    let mut rest = component;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        let byte = match b {
            b'+' => b' ',
            b'%' => match (hex(tail.first()), hex(tail.get(1))) {
                (Some(high), Some(low)) => {
                    rest = tail.get(2..).unwrap_or_default();
                    u8::try_from(high << 4 | low).unwrap_or(b'%')
                }
                _ => b'%',
            },
            other => other,
        };
        out.push(byte);
    }
    out
}

impl FormParams {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, ApiError> {
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(ApiError::invalid_request(
                "the body must be application/x-www-form-urlencoded".to_owned(),
            ));
        }
        let mut params = HashMap::new();
        for (name, value) in pairs(body)? {
            if params.contains_key(&name) {
                return Err(ApiError::invalid_request(format!(
                    "parameter `{name}` is repeated"
                )));
            }
            params.insert(name, value);
        }
        Ok(Self(params))
    }

    /// A parameter's value, if given and not empty.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every parameter, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.optional(name)
            .ok_or_else(|| ApiError::invalid_request(format!("parameter `{name}` is required")))
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, pairs, unescape};
    use proptest::prelude::*;

    #[test]
    fn components_decode_the_same_with_or_without_anything_to_decode() {
        let decoded = |bytes: &[u8]| decode(bytes).ok();
        assert_eq!(
            decoded(b"eyJhbGciOi.J9-_x"),
            Some("eyJhbGciOi.J9-_x".to_owned())
        );
        assert_eq!(decoded(b"a+b%20c"), Some("a b c".to_owned()));
        assert_eq!(decoded(b"%C3%A9t%C3%A9"), Some("été".to_owned()));
        assert_eq!(decoded("été".as_bytes()), Some("été".to_owned()));
        assert_eq!(decoded(b""), Some(String::new()));
        // Not UTF-8, raw or once decoded: refused either way, never replaced.
        assert_eq!(decoded(b"\xff"), None);
        assert_eq!(decoded(b"%ff"), None);
        assert_eq!(decoded(b"a+\xff"), None);
    }

    proptest! {
        /// The one-pass decoder gives the bytes the `percent-encoding` crate gives, `+` first
        /// turned into a space, on inputs dense in `%`, `+`, hex digits and broken escapes.
        #[test]
        fn unescape_decodes_as_the_percent_encoding_crate(
            input in proptest::collection::vec(
                prop::sample::select(b"%+%%0aF9gG z\xc3\xa9&=".to_vec()), 0..40),
        ) {
            let spaced: Vec<u8> = input.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
            let expected: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
            prop_assert_eq!(unescape(&input), expected);
        }

        /// Splitting with `memchr` gives the pairs the standard library's splits give: empty
        /// pairs skipped, a name without `=` has an empty value, a value may hold `=`.
        #[test]
        fn pairs_split_as_the_standard_library_splits(
            input in proptest::collection::vec(prop::sample::select(b"a=&&=b%41+".to_vec()), 0..40),
        ) {
            let expected: Option<Vec<(String, String)>> = input
                .split(|&b| b == b'&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let mut halves = pair.splitn(2, |&b| b == b'=');
                    let mut half = || decode(halves.next().unwrap_or_default()).ok();
                    Some((half()?, half()?))
                })
                .collect();
            prop_assert_eq!(pairs(&input).ok(), expected);
        }
    }
}
