//! `gateway_path`: a route's path template (first line) and a request path (second line),
//! through `PathTemplate::parse` and the gateway's route matching (`route_for`), as for
//! `ANY /gateway/{system}{path}`. The resource template (third line, if any) is parsed and rendered
//! from the matched values.

use handoff_core::config::{GatewayConfig, Route};
use handoff_core::template::{PathTemplate, Template};
use handoff_gateway::{route_for, split_path};
use std::collections::BTreeMap;

/// A path that matches renders back from the template and its values, each value a whole
/// non-empty segment; a path with a dot segment or an encoded separator never matches; the
/// gateway's split of `/gateway/sys{path}` gives back the system and the path.
pub fn gateway_path(data: &[u8]) {
    let (template, rest) = crate::two_parts(data);
    let (path, resource) = crate::two_parts(rest);
    let (Ok(template), Ok(path)) = (std::str::from_utf8(template), std::str::from_utf8(path))
    else {
        return;
    };
    let full = format!("sys{path}");
    if let Ok((system, tail)) = split_path(&format!("/gateway/{full}")) {
        assert!(!system.contains('/') && tail.starts_with('/'));
        // `/gateway/sys` alone is the system's root.
        let rejoined = if system == full {
            system.to_owned()
        } else {
            format!("{system}{tail}")
        };
        assert_eq!(
            rejoined, full,
            "the split gives back the system and the path"
        );
    }
    let resource = std::str::from_utf8(resource)
        .ok()
        .and_then(|r| Template::parse(r).ok());
    let Ok(parsed) = PathTemplate::parse(template) else {
        return;
    };
    for allow_encoded in [false, true] {
        let gateway = gateway(parsed.clone(), resource.clone(), allow_encoded);
        let Some((route, values)) = route_for(Some(&gateway), "GET", path) else {
            continue;
        };
        assert_eq!(
            render(route.path.as_str(), &values),
            path,
            "matched path renders back"
        );
        assert!(values.values().all(|v| !v.is_empty() && !v.contains('/')));
        let lower = path.to_ascii_lowercase();
        assert!(
            !path.split('/').any(|s| s == "." || s == ".."),
            "a dot segment matched"
        );
        if !allow_encoded {
            assert!(!lower.contains("%2f") && !lower.contains("%5c") && !path.contains('\\'));
        }
        if let Some(resource) = &route.resource
            && resource.vars().all(|v| values.contains_key(v))
        {
            assert!(resource.render(|name| values.get(name).cloned()).is_some());
        }
    }
    assert!(route_for(None, "GET", path).is_none());
}

fn gateway(path: PathTemplate, resource: Option<Template>, allow_encoded: bool) -> GatewayConfig {
    GatewayConfig {
        upstream: Some("https://upstream.internal".to_owned()),
        mcp: None,
        ca_pem: None,
        credential: None,
        routes: vec![Route {
            method: "GET".to_owned(),
            path,
            action: "read".to_owned(),
            resource,
            details: BTreeMap::new(),
        }],
        tools: Vec::new(),
        danger_allow_encoded_slashes: allow_encoded,
    }
}

/// The template with each `{name}` segment replaced by its value.
fn render(template: &str, values: &BTreeMap<String, String>) -> String {
    template
        .split('/')
        .map(|segment| {
            segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .and_then(|name| values.get(name))
                .map_or(segment, String::as_str)
        })
        .collect::<Vec<_>>()
        .join("/")
}
