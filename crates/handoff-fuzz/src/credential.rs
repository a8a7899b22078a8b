//! `authorization_header`: an `Authorization` field value through the one parser every door
//! uses (`handoff_http::credential`), alone and as a request's header given once and twice.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use handoff_http::credential::{Credential, CredentialError, credential, parse};
use handoff_http::http::{HeaderMap, HeaderValue, header};

/// A bearer token is one non-empty `token68` taken verbatim from the value and reads back the
/// same; a Basic credential has a non-empty user id without a colon, neither part holds a
/// control character, and it reads back the same once encoded again; the scheme's case never
/// matters; a header given twice is always refused as repeated, whatever it holds.
pub fn authorization_header(data: &[u8]) {
    let parsed = parse(data);
    match &parsed {
        Ok(Credential::Bearer(token)) => {
            assert!(!token.is_empty());
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
            );
            let again = format!("Bearer {token}");
            assert_eq!(parse(again.as_bytes()), Ok(Credential::Bearer(token)));
        }
        Ok(Credential::Basic { user, password }) => {
            assert!(!user.is_empty() && !user.contains(':'));
            assert!(!user.chars().chain(password.chars()).any(char::is_control));
            let again = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
            assert_eq!(parse(again.as_bytes()), parsed);
        }
        Err(_) => {}
    }
    // The scheme in another case parses alike.
    if let Some(space) = data.iter().position(|b| *b == b' ') {
        let mut flipped = data.to_vec();
        for b in flipped.iter_mut().take(space) {
            *b = if b.is_ascii_lowercase() {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
        }
        assert_eq!(
            parse(&flipped),
            parsed,
            "the scheme's case changed the answer"
        );
    }
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut once = HeaderMap::new();
    once.insert(header::AUTHORIZATION, value.clone());
    assert_eq!(credential(&once), parsed);
    let mut twice = once.clone();
    twice.append(header::AUTHORIZATION, value);
    assert_eq!(credential(&twice), Err(CredentialError::Repeated));
}
