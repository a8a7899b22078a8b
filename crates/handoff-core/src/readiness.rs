//! [`Handoff::readiness`]: whether this process can serve requests now (`GET /readyz`), as
//! opposed to being alive (`/healthz`).

use crate::handoff::Handoff;
use crate::ids::SystemId;

/// One readiness check: its name and, when it fails, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub problem: Option<String>,
}

/// The checks, in order; ready when none failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub checks: Vec<Check>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.problem.is_none())
    }

    /// The first failing check.
    pub fn failing(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.problem.is_some())
    }
}

impl Handoff {
    /// Checks that the store answers a read, a signing key is loaded and the policies are.
    pub async fn readiness(&self) -> Readiness {
        // A point read every backend answers cheaply; a store that went away fails it.
        let store = self
            .store()
            .is_frozen(&SystemId::new("readyz"))
            .await
            .err()
            .map(|e| e.to_string());
        let keys = self
            .keys()
            .active()
            .kid()
            .is_empty()
            .then(|| "no signing key is loaded".to_owned());
        let policies = self
            .policy_engine()
            .hash()
            .is_empty()
            .then(|| "no policy set is loaded".to_owned());
        Readiness {
            checks: vec![
                Check {
                    name: "store",
                    problem: store,
                },
                Check {
                    name: "keys",
                    problem: keys,
                },
                Check {
                    name: "policies",
                    problem: policies,
                },
            ],
        }
    }
}
