//! What every area's validator shares: the context problems are reported into (with file and
//! line), and the checks on names and key sets more than one area applies.

use super::{Problem, SourceReader, line_of};
use crate::time::Ttl;
use jsonwebtoken::jwk::JwkSet;
use toml::Spanned;

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) problems: Vec<Problem>,
}

impl Ctx<'_> {
    pub(super) fn report<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        let line = line_of(self.text, at.span().start);
        self.problems.push(Problem::at(self.file, line, message));
    }

    pub(super) fn ttl(&mut self, value: &Spanned<String>, what: &str) -> Option<Ttl> {
        match Ttl::parse(value.get_ref()) {
            Ok(ttl) => Some(ttl),
            Err(e) => {
                self.report(value, format!("{what}: {e}"));
                None
            }
        }
    }
}

/// Reads and parses a JWKS file, reporting why it cannot be used.
pub(super) fn read_jwks(
    ctx: &mut Ctx<'_>,
    reader: &dyn SourceReader,
    file: &Spanned<String>,
    what: &str,
) -> Option<JwkSet> {
    match reader.read(file.get_ref()) {
        Ok(text) => match serde_json::from_str::<JwkSet>(&text) {
            Ok(set) if !set.keys.is_empty() => Some(set),
            Ok(_) => {
                ctx.report(file, format!("{what}: the JWKS holds no keys"));
                None
            }
            Err(e) => {
                ctx.report(file, format!("{what}: the JWKS does not parse: {e}"));
                None
            }
        },
        Err(e) => {
            ctx.report(file, format!("{what}: {e}"));
            None
        }
    }
}

/// A lowercase identifier (`[a-z][a-z0-9_-]*`).
pub(super) fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A Cedar-safe attribute name: `context.counters.<name>` must parse.
pub(super) fn is_cedar_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
