//! The one parser of the `Authorization` request header: credentials as RFC 9110 §11.4 (RFC 7235
//! §2.1) spells them, for the two schemes Handoff's doors take, `Bearer` (RFC 6750 §2.1) and
//! `Basic` (RFC 7617).
//!
//! Every door reads its caller's credential here, so they all agree on what one is:
//! - the field is a singleton (RFC 9110 §11.6.2): given twice, the request is malformed
//!   ([`CredentialError::Repeated`]) whichever copy is valid, since which copy a handler, a proxy
//!   or a log reads differs;
//! - whitespace around the field value is not part of it (RFC 9110 §5.5);
//! - the scheme is matched without regard to case; one or more spaces (`1*SP`) separate it from
//!   the credential, which is one `token68`: nothing empty, nothing after it, no auth-params;
//! - `Basic` decodes padded standard base64 to UTF-8 text and splits it at the first colon; the
//!   user id must not be empty, and neither part may hold a control character (RFC 7617 §2).
//!
//! What a door answers is its own: [`CredentialError::is_malformed_request`] says which refusals
//! are 400 `invalid_request` at every door; the rest are that door's 401.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

/// A credential as the request presented it. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Bearer <token68>`: the token, as sent.
    Bearer(&'a str),
    /// `Basic <base64(user:password)>`, decoded.
    Basic { user: String, password: String },
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Why a request carries no usable credential. Messages never echo the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the `Authorization` header is repeated")]
    Repeated,
    #[error("no `Authorization` header")]
    Missing,
    #[error("the `Authorization` header is not a scheme and one token68 credential")]
    Malformed,
    #[error("the authorization scheme is not accepted here")]
    UnsupportedScheme,
    #[error("the Basic credential is not padded base64 of `user:password` in UTF-8")]
    UndecodableBasic,
}

impl CredentialError {
    /// Whether the request is malformed whoever sent it (400 `invalid_request` at every door)
    /// rather than merely unauthenticated (the door's own 401).
    pub fn is_malformed_request(self) -> bool {
        match self {
            Self::Repeated => true,
            Self::Missing | Self::Malformed | Self::UnsupportedScheme | Self::UndecodableBasic => {
                false
            }
        }
    }
}

/// The request's one `Authorization` field, if it has one; a repeated field is refused.
pub fn authorization(headers: &HeaderMap) -> Result<Option<&HeaderValue>, CredentialError> {
    let mut fields = headers.get_all(header::AUTHORIZATION).iter();
    let first = fields.next();
    if fields.next().is_some() {
        return Err(CredentialError::Repeated);
    }
    Ok(first)
}

/// The request's credential, `Bearer` or `Basic`.
pub fn credential(headers: &HeaderMap) -> Result<Credential<'_>, CredentialError> {
    let value = authorization(headers)?.ok_or(CredentialError::Missing)?;
    parse(value.as_bytes())
}

/// The request's bearer token: any other scheme is [`CredentialError::UnsupportedScheme`].
pub fn bearer(headers: &HeaderMap) -> Result<&str, CredentialError> {
    match credential(headers)? {
        Credential::Bearer(token) => Ok(token),
        Credential::Basic { .. } => Err(CredentialError::UnsupportedScheme),
    }
}

/// Parses one `Authorization` field value.
pub fn parse(value: &[u8]) -> Result<Credential<'_>, CredentialError> {
    let value = trim_whitespace(value);
    let space = value
        .iter()
        .position(|b| *b == b' ')
        .ok_or(CredentialError::Malformed)?;
    let (scheme, rest) = value.split_at(space);
    if scheme.is_empty() || !scheme.iter().copied().all(is_tchar) {
        return Err(CredentialError::Malformed);
    }
    let bearer = scheme.eq_ignore_ascii_case(b"bearer");
    if !bearer && !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(CredentialError::UnsupportedScheme);
    }
    let token = trim_spaces(rest);
    if !is_token68(token) {
        return Err(CredentialError::Malformed);
    }
    // INVARIANT: a token68 is ASCII, so this never fails.
    let token = std::str::from_utf8(token).map_err(|_| CredentialError::Malformed)?;
    if bearer {
        Ok(Credential::Bearer(token))
    } else {
        basic(token)
    }
}

fn basic(token: &str) -> Result<Credential<'static>, CredentialError> {
    let decoded = STANDARD
        .decode(token)
        .map_err(|_| CredentialError::UndecodableBasic)?;
    let text = String::from_utf8(decoded).map_err(|_| CredentialError::UndecodableBasic)?;
    let (user, password) = text
        .split_once(':')
        .ok_or(CredentialError::UndecodableBasic)?;
    if user.is_empty() || text.chars().any(char::is_control) {
        return Err(CredentialError::UndecodableBasic);
    }
    Ok(Credential::Basic {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

fn trim_whitespace(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |last| last + 1);
    value.get(start..end).unwrap_or_default()
}

fn trim_spaces(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|b| *b != b' ').unwrap_or(value.len());
    value.get(start..).unwrap_or_default()
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 9110 §11.2).
fn is_token68(token: &[u8]) -> bool {
    let body = token.iter().position(|b| *b == b'=').unwrap_or(token.len());
    let (chars, padding) = token.split_at(body);
    !chars.is_empty()
        && chars
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
        && padding.iter().all(|b| *b == b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        headers
    }

    fn basic_of(text: &str) -> String {
        format!("Basic {}", STANDARD.encode(text))
    }

    #[test]
    fn a_bearer_token_is_read_whatever_the_case_of_its_scheme() {
        for value in [
            "Bearer abc.def-_~+/==",
            "bearer abc.def-_~+/==",
            "BEARER abc.def-_~+/==",
        ] {
            assert_eq!(
                parse(value.as_bytes()),
                Ok(Credential::Bearer("abc.def-_~+/==")),
                "{value}"
            );
        }
    }

    #[test]
    fn one_or_more_spaces_separate_the_scheme_and_whitespace_around_the_value_is_not_part_of_it() {
        for value in [
            "Bearer  abc",
            " Bearer abc",
            "Bearer abc \t",
            "\tBearer   abc  ",
        ] {
            assert_eq!(
                parse(value.as_bytes()),
                Ok(Credential::Bearer("abc")),
                "{value:?}"
            );
        }
        // Only spaces separate: a tab does not.
        assert_eq!(parse(b"Bearer\tabc"), Err(CredentialError::Malformed));
    }

    #[test]
    fn a_repeated_authorization_header_is_a_malformed_request_even_when_both_copies_are_valid() {
        let twice = headers(&[b"Bearer abc", b"Bearer abc"]);
        assert_eq!(credential(&twice), Err(CredentialError::Repeated));
        assert_eq!(bearer(&twice), Err(CredentialError::Repeated));
        assert_eq!(authorization(&twice), Err(CredentialError::Repeated));
        assert!(CredentialError::Repeated.is_malformed_request());
    }

    #[test]
    fn only_a_repeated_header_is_a_malformed_request_and_every_other_refusal_is_unauthenticated() {
        for error in [
            CredentialError::Missing,
            CredentialError::Malformed,
            CredentialError::UnsupportedScheme,
            CredentialError::UndecodableBasic,
        ] {
            assert!(!error.is_malformed_request(), "{error:?}");
        }
    }

    #[test]
    fn a_missing_or_empty_credential_is_refused() {
        assert_eq!(credential(&HeaderMap::new()), Err(CredentialError::Missing));
        assert_eq!(authorization(&HeaderMap::new()), Ok(None));
        for value in [
            "",
            " ",
            "Bearer",
            "Bearer ",
            "Bearer    ",
            "Basic",
            "Basic ",
            " abc",
        ] {
            assert_eq!(
                parse(value.as_bytes()),
                Err(CredentialError::Malformed),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_credential_that_is_not_one_token68_is_refused() {
        for value in [
            "Bearer a b",
            "Bearer a,b",
            "Bearer \"abc\"",
            "Bearer a=b",
            "Bearer ==",
            "Bearer a\tb",
            "Bearer realm=\"x\", token=\"y\"",
            "Bea(rer abc",
        ] {
            assert_eq!(
                parse(value.as_bytes()),
                Err(CredentialError::Malformed),
                "{value:?}"
            );
        }
        assert_eq!(parse(b"Bearer a\xffb"), Err(CredentialError::Malformed));
        assert_eq!(
            bearer(&headers(&[b"Bearer \xe2\x82\xac"])),
            Err(CredentialError::Malformed)
        );
    }

    #[test]
    fn an_unknown_scheme_is_no_credential_here() {
        for value in ["Digest abc", "Negotiate abc", "Token abc", "DPoP abc"] {
            assert_eq!(
                parse(value.as_bytes()),
                Err(CredentialError::UnsupportedScheme),
                "{value}"
            );
        }
    }

    #[test]
    fn a_bearer_door_refuses_a_basic_credential() {
        let basic = basic_of("git:secret");
        assert_eq!(
            bearer(&headers(&[basic.as_bytes()])),
            Err(CredentialError::UnsupportedScheme)
        );
        assert_eq!(
            bearer(&headers(&[b"Bearer abc"])),
            Ok("abc"),
            "and takes a bearer one"
        );
    }

    #[test]
    fn a_basic_credential_is_split_at_its_first_colon_and_read_as_utf8() {
        for (text, user, password) in [
            ("git:secret", "git", "secret"),
            ("git:se:cr:et", "git", "se:cr:et"),
            ("git:", "git", ""),
            ("gït:pässwörd", "gït", "pässwörd"),
        ] {
            let value = basic_of(text);
            assert_eq!(
                credential(&headers(&[value.as_bytes()])),
                Ok(Credential::Basic {
                    user: user.to_owned(),
                    password: password.to_owned()
                }),
                "{text}"
            );
        }
        let lower = format!("basic {}", STANDARD.encode("git:secret"));
        assert!(matches!(
            parse(lower.as_bytes()),
            Ok(Credential::Basic { .. })
        ));
    }

    #[test]
    fn a_basic_credential_that_is_not_padded_base64_of_a_user_a_colon_and_a_password_is_refused() {
        let unpadded = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode("git:s")
        );
        let not_utf8 = format!("Basic {}", STANDARD.encode(b"git:\xff"));
        for value in [
            basic_of("no colon"),
            basic_of(":secret"),
            basic_of("git:sec\nret"),
            basic_of("g\u{7f}it:secret"),
            unpadded,
            not_utf8,
            "Basic !!!!".to_owned(),
        ] {
            assert!(
                matches!(
                    parse(value.as_bytes()),
                    Err(CredentialError::UndecodableBasic | CredentialError::Malformed)
                ),
                "{value}"
            );
        }
        assert_eq!(
            parse(basic_of(":secret").as_bytes()),
            Err(CredentialError::UndecodableBasic)
        );
    }

    #[test]
    fn a_credential_never_shows_its_secret_in_debug() {
        let bearer = format!("{:?}", Credential::Bearer("top-secret"));
        let basic = format!(
            "{:?}",
            Credential::Basic {
                user: "git".to_owned(),
                password: "top-secret".to_owned()
            }
        );
        assert!(!bearer.contains("top-secret"), "{bearer}");
        assert!(
            !basic.contains("top-secret") && basic.contains("git"),
            "{basic}"
        );
    }
}
