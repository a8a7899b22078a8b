//! Who may contain: operators (the operator credential over HTTP, or local access on the command
//! line), registered systems (their introspection credential), and the callers that may
//! introspect or revoke a token.

use crate::audit::{AuditEvent, EventKind};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::hash::sha256_hex;
use crate::ids::SystemId;
use crate::store::{Effect, TaskWrite, Write};

/// An authenticated operator. Over HTTP, a caller presenting the operator credential; on the
/// command line, whoever can write the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    name: String,
}

impl Operator {
    /// An operator acting through local access to the data directory (the CLI).
    pub fn local(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A registered system that authenticated with its credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemCaller {
    system: SystemId,
    audience: String,
}

impl SystemCaller {
    pub fn system(&self) -> &SystemId {
        &self.system
    }

    /// The audience of the tokens this system may see and revoke.
    pub(crate) fn audience(&self) -> &str {
        &self.audience
    }
}

/// Who may introspect or revoke a token.
#[derive(Clone, Debug)]
pub enum TokenCaller {
    /// Sees and revokes only tokens for its own audience.
    System(SystemCaller),
    /// Revokes only tokens minted to it (RFC 7009's client); introspects nothing.
    Agent(crate::identity::VerifiedIdentity),
    /// Sees and revokes every token.
    Operator(Operator),
}

impl Handoff {
    /// Checks an operator credential presented over HTTP.
    pub fn authenticate_operator(&self, secret: &str) -> Result<Operator, ServiceError> {
        match self.operator_sha256() {
            Some(expected) if !secret.is_empty() && sha256_hex(secret.as_bytes()) == expected => {
                Ok(Operator {
                    name: "operator".to_owned(),
                })
            }
            _ => Err(ServiceError::InvalidClient(
                "operator credentials are required".to_owned(),
            )),
        }
    }

    /// Checks a system's introspection credential (HTTP Basic `system:secret`).
    pub async fn authenticate_system(
        &self,
        system: &str,
        secret: &str,
    ) -> Result<SystemCaller, ServiceError> {
        let refused =
            || ServiceError::InvalidClient("unknown system or wrong credential".to_owned());
        let config = self
            .config()
            .systems
            .get(&SystemId::new(system))
            .ok_or_else(refused)?;
        let stored = self
            .store()
            .credential(&config.id)
            .await?
            .ok_or_else(refused)?;
        // Comparing digests: the caller controls the secret, not the digest, so no timing leak.
        if secret.is_empty() || sha256_hex(secret.as_bytes()) != stored {
            return Err(refused());
        }
        Ok(SystemCaller {
            system: config.id.clone(),
            audience: config.audience.clone(),
        })
    }

    /// Registers a new introspection credential for `system`, replacing any earlier one, and
    /// returns the secret (shown once; only its digest is stored).
    pub async fn register_credential(
        &self,
        operator: &Operator,
        system: &str,
    ) -> Result<String, ServiceError> {
        let config = self
            .config()
            .systems
            .get(&SystemId::new(system))
            .ok_or_else(|| {
                ServiceError::InvalidTarget(format!("`{system}` is not a registered system"))
            })?;
        let secret = self.id("hsk")?;
        let event = AuditEvent {
            kind: Some(EventKind::Credential),
            system: Some(config.id.to_string()),
            actor: Some(operator.name().to_owned()),
            description: Some("introspection credential registered".to_owned()),
            ..AuditEvent::default()
        };
        let mut write = Write::new(self.now(), event, TaskWrite::None);
        write.effects.push(Effect::Credential {
            system: config.id.clone(),
            secret_sha256: sha256_hex(secret.as_bytes()),
        });
        self.store().write(write).await?;
        Ok(secret)
    }
}
