//! Templates a gateway request is matched and described with: a route's path template
//! (`/repos/{owner}/{repo}/pulls`, matched segment by segment on every gateway request) and a
//! text template (`repo:{owner}/{repo}`, filled from the captured values or a tool's arguments).
//! Config parses them once; the gateway only matches and renders.

use std::collections::BTreeMap;

/// Longest template, path or pointer accepted in config.
pub const MAX_TEMPLATE_CHARS: usize = 512;

/// Why a template was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("a template is longer than {MAX_TEMPLATE_CHARS} bytes")]
    TooLong,
    #[error("unbalanced `}}` in `{0}`")]
    UnbalancedClose(String),
    #[error("unclosed `{{` in `{0}`")]
    Unclosed(String),
    #[error("placeholder `{{{0}}}` must be an identifier")]
    NotIdentifier(String),
    #[error("path `{0}` must start with `/`")]
    NotAbsolute(String),
    #[error("path `{path}`: placeholder `{{{name}}}` appears more than once")]
    Repeated { path: String, name: String },
    #[error("path `{0}`: a placeholder must be a whole segment")]
    PartialSegment(String),
}

/// `text`, unless it is longer than [`MAX_TEMPLATE_CHARS`].
pub fn within_limit(text: &str) -> Result<&str, TemplateError> {
    if text.len() > MAX_TEMPLATE_CHARS {
        Err(TemplateError::TooLong)
    } else {
        Ok(text)
    }
}

/// One piece of a template: literal text or a `{name}` placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Var(String),
}

/// `repo:{owner}/{repo}`: text with placeholders filled from a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let (head, tail) = rest.split_at(open);
            if head.contains('}') {
                return Err(TemplateError::UnbalancedClose(text.to_owned()));
            }
            if !head.is_empty() {
                parts.push(Part::Text(head.to_owned()));
            }
            let tail = tail.trim_start_matches('{');
            let Some(close) = tail.find('}') else {
                return Err(TemplateError::Unclosed(text.to_owned()));
            };
            let (name, after) = tail.split_at(close);
            if !is_var(name) {
                return Err(TemplateError::NotIdentifier(name.to_owned()));
            }
            parts.push(Part::Var(name.to_owned()));
            rest = after.trim_start_matches('}');
        }
        if rest.contains('}') {
            return Err(TemplateError::UnbalancedClose(text.to_owned()));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text with each placeholder's value, or `None` when one has no value.
    pub fn render(&self, value: impl Fn(&str) -> Option<String>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(name) => out.push_str(&value(name)?),
            }
        }
        Some(out)
    }
}

/// One segment of a route's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Var(String),
}

/// `/repos/{owner}/{repo}/pulls`, matched segment by segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
}

impl PathTemplate {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let Some(body) = text.strip_prefix('/') else {
            return Err(TemplateError::NotAbsolute(text.to_owned()));
        };
        let mut segments = Vec::new();
        for piece in body.split('/') {
            if let Some(name) = piece.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if !is_var(name) {
                    return Err(TemplateError::NotIdentifier(name.to_owned()));
                }
                // Two segments bound to one name would keep only the last value, so a token
                // scoped to one resource would reach another: refuse the route instead.
                if segments.contains(&Segment::Var(name.to_owned())) {
                    return Err(TemplateError::Repeated {
                        path: text.to_owned(),
                        name: name.to_owned(),
                    });
                }
                segments.push(Segment::Var(name.to_owned()));
            } else if piece.contains('{') || piece.contains('}') {
                return Err(TemplateError::PartialSegment(text.to_owned()));
            } else {
                segments.push(Segment::Literal(piece.to_owned()));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The placeholders' values when `path` (no query) matches, or `None`.
    pub fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let body = path.strip_prefix('/')?;
        let mut values = BTreeMap::new();
        let mut pieces = body.split('/');
        for segment in &self.segments {
            let piece = pieces.next()?;
            match segment {
                Segment::Literal(text) if text == piece => {}
                Segment::Literal(_) => return None,
                Segment::Var(_) if piece.is_empty() => return None,
                Segment::Var(name) => {
                    values.insert(name.clone(), piece.to_owned());
                }
            }
        }
        pieces.next().is_none().then_some(values)
    }
}

fn is_var(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_template_matches_whole_segments_and_captures_them() {
        let path = PathTemplate::parse("/repos/{owner}/{repo}/pulls").unwrap();
        let values = path.matches("/repos/acme/app/pulls").unwrap();
        assert_eq!(values.get("owner").map(String::as_str), Some("acme"));
        assert_eq!(values.get("repo").map(String::as_str), Some("app"));
        assert!(path.matches("/repos/acme/app/pulls/1").is_none());
        assert!(path.matches("/repos/acme//pulls").is_none());
        assert!(path.matches("/repos/acme/app").is_none());
    }

    #[test]
    fn a_template_renders_placeholders_and_refuses_missing_ones() {
        let template = Template::parse("repo:{owner}/{repo}").unwrap();
        let values: BTreeMap<&str, &str> = [("owner", "acme"), ("repo", "app")].into();
        assert_eq!(
            template.render(|n| values.get(n).map(|v| (*v).to_owned())),
            Some("repo:acme/app".to_owned())
        );
        assert_eq!(template.render(|_| None), None);
        assert!(Template::parse("repo:{owner").is_err());
        assert!(Template::parse("repo:owner}").is_err());
        assert!(PathTemplate::parse("/a/x{b}").is_err());
        let repeated = PathTemplate::parse("/repos/{repo}/{repo}")
            .unwrap_err()
            .to_string();
        assert!(repeated.contains("more than once"), "{repeated}");
    }
}
