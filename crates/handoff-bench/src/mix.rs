//! The workload: tasks against the bundled example deployment (`examples/quickstart`), each a
//! fixed cycle of exchanges whose expected answers are known, so any other answer is an error.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use serde_json::{Value, json};

/// What the example's policies and containment answer to a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// 200 with an access token.
    Permit,
    /// 403 `access_denied`.
    Deny,
}

pub struct Step {
    pub name: &'static str,
    pub system: &'static str,
    pub action: &'static str,
    pub expect: Expect,
}

pub struct TaskKind {
    pub purpose: &'static str,
    pub plan: &'static [&'static str],
    /// Repeated in order for the task's life.
    pub cycle: &'static [Step],
}

/// A release: read the repo, run the tests, push (a write, permitted because the plan names the
/// git host), then reach for payments (denied: outside the plan, and forbidden for a release
/// anyway). Deploys are not in the cycle: the example limits them to five per agent per day.
pub const RELEASE: TaskKind = TaskKind {
    purpose: "release",
    plan: &["git", "ci"],
    cycle: &[
        Step {
            name: "git read",
            system: "git",
            action: "read",
            expect: Expect::Permit,
        },
        Step {
            name: "ci run_tests",
            system: "ci",
            action: "run_tests",
            expect: Expect::Permit,
        },
        Step {
            name: "git push",
            system: "git",
            action: "push",
            expect: Expect::Permit,
        },
        Step {
            name: "payments read",
            system: "payments",
            action: "read",
            expect: Expect::Deny,
        },
    ],
};

/// A support ticket: read it, read the customer (PII), then try to mail out (denied after PII).
pub const SUPPORT: TaskKind = TaskKind {
    purpose: "support",
    plan: &["tickets", "crm", "mail"],
    cycle: &[
        Step {
            name: "tickets read",
            system: "tickets",
            action: "read",
            expect: Expect::Permit,
        },
        Step {
            name: "crm read_customer",
            system: "crm",
            action: "read_customer",
            expect: Expect::Permit,
        },
        Step {
            name: "mail send",
            system: "mail",
            action: "send",
            expect: Expect::Deny,
        },
    ],
};

const KINDS: [&TaskKind; 2] = [&RELEASE, &SUPPORT];

const FORM_PREFIX: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
    &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Atxn_token\
    &actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt";

/// The next request an agent makes.
pub enum Op {
    /// `POST /v1/tasks` with this JSON body.
    Open(Bytes),
    /// `POST /oauth/token` with this form body, the answer the step expects, and its name.
    Exchange(Bytes, Expect, &'static str),
}

struct OpenTask {
    /// One precomputed form body per step of the cycle, with its expected answer and name.
    bodies: Vec<(Bytes, Expect, &'static str)>,
    done: u32,
}

/// One agent's position in its workload.
pub struct Workload {
    identity: String,
    kind: usize,
    per_task: u32,
    task: Option<OpenTask>,
    opened: u64,
}

impl Workload {
    /// Agents alternate task kinds, starting at `index`'s parity so the mix is even.
    pub fn new(identity: String, index: usize, per_task: u32) -> Self {
        Self {
            identity,
            kind: index % KINDS.len(),
            per_task: per_task.max(1),
            task: None,
            opened: 0,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn kind(&self) -> &'static TaskKind {
        KINDS.get(self.kind).copied().unwrap_or(&RELEASE)
    }

    /// The next request: an exchange in the open task, or a fresh task when it has done enough.
    pub fn next(&mut self) -> Op {
        if let Some(task) = &mut self.task
            && task.done < self.per_task
            && !task.bodies.is_empty()
        {
            let index = usize::try_from(task.done).unwrap_or(0) % task.bodies.len();
            task.done = task.done.saturating_add(1);
            if let Some((body, expect, name)) = task.bodies.get(index) {
                return Op::Exchange(body.clone(), *expect, name);
            }
        }
        Op::Open(self.open_body())
    }

    /// The body of `POST /v1/tasks` for the next task.
    pub fn open_body(&self) -> Bytes {
        let kind = self.kind();
        let body = json!({
            "intent": format!("benchmark {} task {}", kind.purpose, self.opened),
            "purpose": kind.purpose,
            "user": "bench-user",
            "plan": kind.plan,
        });
        Bytes::from(body.to_string())
    }

    /// Takes the `201` answer to an open: the task's Transaction Token makes the exchange bodies.
    pub fn opened(&mut self, answer: &[u8]) -> Result<()> {
        let answer: Value =
            serde_json::from_slice(answer).context("the task answer is not JSON")?;
        let txn = answer
            .get("txn_token")
            .and_then(Value::as_str)
            .context("the task answer has no `txn_token`")?;
        let kind = self.kind();
        let bodies = kind
            .cycle
            .iter()
            .map(|step| {
                let form = format!(
                    "{FORM_PREFIX}&subject_token={txn}&actor_token={}&audience={}&scope={}",
                    self.identity, step.system, step.action
                );
                (Bytes::from(form), step.expect, step.name)
            })
            .collect();
        self.task = Some(OpenTask { bodies, done: 0 });
        self.opened = self.opened.saturating_add(1);
        self.kind = (self.kind + 1) % KINDS.len();
        Ok(())
    }

    /// Drops the open task; the next request opens a fresh one.
    pub fn forget_task(&mut self) {
        self.task = None;
    }
}

#[cfg(test)]
mod tests {
    use super::{Expect, Op, Workload};

    #[test]
    fn an_agent_opens_a_task_then_cycles_its_steps_then_opens_another() {
        let mut workload = Workload::new("id.x.y".to_owned(), 0, 5);
        assert!(matches!(workload.next(), Op::Open(_)));
        workload
            .opened(br#"{"txn_token":"a.b.c"}"#)
            .expect("a task answer");
        let expects: Vec<Expect> = (0..5)
            .map(|_| match workload.next() {
                Op::Exchange(body, expect, _) => {
                    let body = String::from_utf8(body.to_vec()).expect("utf-8");
                    assert!(body.contains("subject_token=a.b.c&actor_token=id.x.y"));
                    expect
                }
                Op::Open(_) => panic!("the task is not done"),
            })
            .collect();
        assert_eq!(
            expects,
            [
                Expect::Permit,
                Expect::Permit,
                Expect::Permit,
                Expect::Deny,
                Expect::Permit
            ]
        );
        match workload.next() {
            Op::Open(body) => assert!(String::from_utf8_lossy(&body).contains("\"support\"")),
            Op::Exchange(..) => panic!("a fresh task is due"),
        }
    }
}
