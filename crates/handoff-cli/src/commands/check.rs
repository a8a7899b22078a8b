//! `handoff check`: load and validate a deployment without serving.

use crate::DeploymentArgs;
use std::process::ExitCode;

pub fn run(args: &DeploymentArgs) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(args) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let config = &deployment.config;
    // What only the fetcher can judge (a `ca_file` that parses as certificates); nothing is
    // fetched.
    let issuer_problems = handoff_issuers::check(config);
    if !issuer_problems.is_empty() {
        eprintln!(
            "{} has {} problem(s):",
            crate::deployment::describe(args.config.as_deref()),
            issuer_problems.len()
        );
        for problem in &issuer_problems {
            eprintln!("  {problem}");
        }
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    }
    let actions: usize = config.systems.values().map(|s| s.actions.len()).sum();
    println!(
        "{} is valid: {} systems, {} actions, {} purposes, {} issuers{}, {} policies (set {})",
        crate::deployment::describe(args.config.as_deref()),
        config.systems.len(),
        actions,
        config.purposes.len(),
        config.issuers.len(),
        if config.dev_issuer {
            " + the dev issuer"
        } else {
            ""
        },
        deployment.policies.len(),
        deployment.policies.hash().get(..12).unwrap_or_default(),
    );
    let server = &config.server;
    println!(
        "  server: header_read_timeout {}s, body_read_timeout {}s, max_header_bytes {}, max_connections {}",
        server.header_read_timeout.seconds(),
        server.body_read_timeout.seconds(),
        server.max_header_bytes,
        server.max_connections,
    );
    println!(
        "  public_url (issuer): {}, shutdown_drain {}s",
        server
            .public_url
            .as_deref()
            .unwrap_or("http://<listen address>"),
        server.shutdown_drain.seconds(),
    );
    for warning in warnings(config) {
        eprintln!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What is valid but should not go to production as it is.
pub fn warnings(config: &handoff_core::config::Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.dev_issuer {
        // A development deployment: plain HTTP on loopback is expected there.
        return warnings;
    }
    match config.server.public_url.as_deref() {
        None => warnings.push(
            "server.public_url is not set: the issuer will be http://<listen address>; set it to the https URL clients reach Handoff at".to_owned(),
        ),
        Some(url) if !url.starts_with("https://") => warnings.push(format!(
            "server.public_url `{url}` is not https: tokens and metadata would name a plain-HTTP issuer"
        )),
        Some(_) => {}
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::warnings;

    #[test]
    fn a_plain_http_or_missing_public_url_is_warned_about_outside_development_only() {
        let Ok(deployment) = crate::deployment::load(None) else {
            panic!("the bundled example loads");
        };
        let mut config = deployment.config;
        assert!(config.dev_issuer);
        assert!(warnings(&config).is_empty(), "{:?}", warnings(&config));
        config.dev_issuer = false;
        let missing = warnings(&config);
        assert!(missing[0].contains("is not set"), "{missing:?}");
        config.server.public_url = Some("http://handoff.example.com".to_owned());
        let plain = warnings(&config);
        assert!(plain[0].contains("is not https"), "{plain:?}");
        config.server.public_url = Some("https://handoff.example.com".to_owned());
        assert!(warnings(&config).is_empty());
    }
}
