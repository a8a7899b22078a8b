//! `[[systems.ID.gateway.routes]]`: each route's method, path template, resource template and
//! details mapping, checked against the system's actions and details.

use super::raw::RawGateway;
use super::{Route, check_mapping};
use crate::template::{PathTemplate, Template, within_limit};
use std::collections::BTreeSet;
use std::ops::Range;
use toml::Spanned;

pub(super) fn validate_routes(
    id: &str,
    raw: &RawGateway,
    actions: &BTreeSet<String>,
    details: &BTreeSet<String>,
    report: &mut impl FnMut(Range<usize>, String),
) -> Vec<Route> {
    let mut routes = Vec::new();
    for spanned in &raw.routes {
        let route = spanned.get_ref();
        let at = spanned.span();
        let method = route.method.to_ascii_uppercase();
        if !matches!(
            method.as_str(),
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS"
        ) {
            report(
                at.clone(),
                format!(
                    "systems.{id}.gateway.routes: method `{}` is not supported",
                    route.method
                ),
            );
            continue;
        }
        let path = match within_limit(&route.path).and_then(PathTemplate::parse) {
            Ok(path) => path,
            Err(e) => {
                report(at.clone(), format!("systems.{id}.gateway.routes: {e}"));
                continue;
            }
        };
        let path_vars: BTreeSet<&str> = path.vars().collect();
        let resource = match route
            .resource
            .as_deref()
            .map(|r| within_limit(r).and_then(Template::parse))
        {
            None => None,
            Some(Ok(template)) => {
                if let Some(missing) = template.vars().find(|v| !path_vars.contains(v)) {
                    report(
                        at.clone(),
                        format!(
                            "systems.{id}.gateway.routes `{}`: resource placeholder `{{{missing}}}` is not in the path",
                            route.path
                        ),
                    );
                    continue;
                }
                Some(template)
            }
            Some(Err(e)) => {
                report(at.clone(), format!("systems.{id}.gateway.routes: {e}"));
                continue;
            }
        };
        if let Err(e) = check_mapping(id, &route.action, &route.details, actions, details) {
            report(at.clone(), e);
            continue;
        }
        if routes
            .iter()
            .any(|r: &Route| r.method == method && r.path == path)
        {
            report(
                at.clone(),
                format!(
                    "systems.{id}.gateway.routes: `{method} {}` is declared twice",
                    route.path
                ),
            );
            continue;
        }
        routes.push(Route {
            method,
            path,
            action: route.action.clone(),
            resource,
            details: route.details.clone(),
        });
    }
    if !raw.routes.is_empty() && raw.upstream.is_none() {
        report(
            raw.routes.first().map_or(0..0, Spanned::span),
            format!("systems.{id}.gateway: routes need an `upstream`"),
        );
    }
    routes
}
