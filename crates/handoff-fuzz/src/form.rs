//! `exchange_form`: a `POST /oauth/token` body (RFC 8693 token exchange, or a Transaction Token
//! request) read as the token endpoint reads it, up to the service call.

use handoff_server::fuzzing::{TokenForm, form_params, token_form};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

const FORM: &[u8] = b"application/x-www-form-urlencoded";

/// A form that parses re-encodes to one that parses to the same parameters; an exchange request
/// carries no empty or spaced scope item; the content type is required.
pub fn exchange_form(data: &[u8]) {
    // The first line may pick another content type: `!` followed by the header value.
    let (content_type, body) = match data.strip_prefix(b"!") {
        Some(rest) => crate::two_parts(rest),
        None => (FORM, data),
    };
    let params = form_params(content_type, body);
    if let Ok(params) = &params {
        let encoded = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, NON_ALPHANUMERIC),
                    utf8_percent_encode(v, NON_ALPHANUMERIC)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let again = form_params(FORM, encoded.as_bytes()).expect("a re-encoded form parses");
        assert_eq!(&again, params, "re-encoded form");
    }
    match token_form(content_type, body) {
        Ok(TokenForm::Access(request)) => {
            assert!(params.is_ok());
            assert!(!request.subject_token.is_empty() && !request.actor_token.is_empty());
            assert!(
                request
                    .scope
                    .iter()
                    .all(|s| !s.is_empty() && !s.contains(' ')),
                "scope items are split on spaces"
            );
        }
        Ok(TokenForm::Txn { subject_token, .. }) => {
            assert!(params.is_ok());
            assert!(!subject_token.is_empty());
        }
        Err(_) => {}
    }
}
