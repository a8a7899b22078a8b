//! `[[systems.ID.gateway.tools]]`: each MCP tool's name, action, resource template and details
//! mapping, checked against the system's actions and details.

use super::raw::RawGateway;
use super::{Tool, check_mapping};
use crate::template::{Template, within_limit};
use std::collections::BTreeSet;
use std::ops::Range;
use toml::Spanned;

pub(super) fn validate_tools(
    id: &str,
    raw: &RawGateway,
    actions: &BTreeSet<String>,
    details: &BTreeSet<String>,
    report: &mut impl FnMut(Range<usize>, String),
) -> Vec<Tool> {
    let mut tools: Vec<Tool> = Vec::new();
    for spanned in &raw.tools {
        let tool = spanned.get_ref();
        let at = spanned.span();
        if tool.name.trim().is_empty() || tool.name.len() > 128 {
            report(
                at.clone(),
                format!("systems.{id}.gateway.tools: a tool needs a name of at most 128 bytes"),
            );
            continue;
        }
        let resource = match tool
            .resource
            .as_deref()
            .map(|r| within_limit(r).and_then(Template::parse))
        {
            None => None,
            Some(Ok(template)) => Some(template),
            Some(Err(e)) => {
                report(at.clone(), format!("systems.{id}.gateway.tools: {e}"));
                continue;
            }
        };
        if let Err(e) = check_mapping(id, &tool.action, &tool.details, actions, details) {
            report(at.clone(), e);
            continue;
        }
        if tools.iter().any(|t| t.name == tool.name) {
            report(
                at.clone(),
                format!(
                    "systems.{id}.gateway.tools: `{}` is declared twice",
                    tool.name
                ),
            );
            continue;
        }
        tools.push(Tool {
            name: tool.name.clone(),
            action: tool.action.clone(),
            resource,
            details: tool.details.clone(),
        });
    }
    if !raw.tools.is_empty() && raw.mcp.is_none() {
        report(
            raw.tools.first().map_or(0..0, Spanned::span),
            format!("systems.{id}.gateway: tools need an `mcp` upstream"),
        );
    }
    tools
}
