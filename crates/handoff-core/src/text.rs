//! The one check every door applies to text that names something (a user, a resource, a task, an
//! agent, a delegate): present, bounded, and free of characters that render as nothing.
//!
//! Control characters and Unicode format characters (`Cf`: bidi overrides and isolates, zero-width
//! spaces and joiners, the byte order mark, tags) let two different byte strings look like one
//! name in an audit record, a console or an approval prompt, so they are refused, never stripped.

use crate::error::ServiceError;
use crate::limits::MAX_NAME_CHARS;
use unicode_general_category::{GeneralCategory, get_general_category};

/// The first character of `text` that would render as nothing or move other text around:
/// a control character, a format character (`Cf`), or a line or paragraph separator.
pub fn invisible_char(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        c.is_control()
            || matches!(
                get_general_category(c),
                GeneralCategory::Format
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
            )
    })
}

/// Checks one identifier from a request: not blank, at most [`MAX_NAME_CHARS`] characters, and
/// no invisible character ([`invisible_char`]).
pub fn check_identifier(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.trim().is_empty() {
        return Err(ServiceError::InvalidRequest(format!(
            "`{field}` is required"
        )));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::InvalidRequest(format!(
            "`{field}` must be at most {MAX_NAME_CHARS} printable characters"
        )));
    }
    if let Some(c) = invisible_char(value) {
        return Err(ServiceError::InvalidRequest(format!(
            "`{field}` contains the invisible character U+{:04X}",
            u32::from(c)
        )));
    }
    Ok(())
}

/// At most `max` characters of `text`, for a record or a message that quotes a request.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// `text`, unless it is empty.
pub(crate) fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bidi_zero_width_and_other_format_characters() {
        for c in [
            '\u{202A}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{200B}',
            '\u{200D}',
            '\u{200F}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{2060}',
            '\u{E0041}',
            '\u{0000}',
            '\u{007F}',
            '\u{2028}',
        ] {
            let text = format!("repo{c}main");
            assert_eq!(invisible_char(&text), Some(c), "U+{:04X}", u32::from(c));
            assert!(check_identifier("resource", &text).is_err());
        }
    }

    #[test]
    fn accepts_visible_text_in_any_script() {
        for text in [
            "acme/repo",
            "alice@example.com",
            "José",
            "東京",
            "spiffe://x/y z",
        ] {
            assert_eq!(invisible_char(text), None);
            assert!(check_identifier("user", text).is_ok());
        }
    }

    #[test]
    fn refuses_blank_and_overlong_names() {
        assert!(check_identifier("user", "  ").is_err());
        assert!(check_identifier("user", &"a".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(check_identifier("user", &"a".repeat(MAX_NAME_CHARS)).is_ok());
    }
}
