//! Newtypes for the identifiers that flow through a handoff, so one is never mistaken for another.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A target system's id from the registry (`git`, `payments`).
    SystemId
);
string_id!(
    /// A workload identity: the issuer's agent claim (a SPIFFE ID, a `sub`).
    AgentId
);
string_id!(
    /// The person a task acts for; the `sub` of minted tokens.
    UserId
);
string_id!(
    /// A task, carried as `txn` in every token minted under it.
    TaskId
);
string_id!(
    /// One decision of the decision point, permit or deny.
    DecisionId
);
string_id!(
    /// The `jti` of a minted access token.
    TokenId
);
string_id!(
    /// A task purpose declared in config (`payments`, `release`).
    Purpose
);
string_id!(
    /// A system action, namespaced by system: `git:push`.
    ActionName
);

impl ActionName {
    /// The qualified name of `action` on `system`.
    pub fn qualified(system: &SystemId, action: &str) -> Self {
        Self(format!("{}:{}", system.as_str(), action))
    }

    /// The system part of a qualified name.
    pub fn system(&self) -> &str {
        self.0.split_once(':').map_or("", |(system, _)| system)
    }
}
