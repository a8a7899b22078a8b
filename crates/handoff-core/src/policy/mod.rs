//! The decision point: Cedar policies validated against the generated schema, evaluated per
//! requested action at request time. Any error, or no matching permit, is a deny.

mod context;
pub mod decision;
mod index;
mod reach;
mod reads;
pub mod schema;
pub mod testing;

pub use context::{
    DetailValue, DetailsError, RequestFacts, exchange_context as context_for_exchange,
    open_task_context as context_for_open, project_details,
};
pub use decision::{
    Decision, Denial, DenyReason, GatedPermit, Grant, OpenDecision, Permit, ReleaseRefusal,
};

/// The annotation that gates what a permit policy permits behind a person: `@approval("group")`.
pub const APPROVAL_ANNOTATION: &str = "approval";

use crate::config::{Config, Problem, line_of};
use crate::hash::sha256_hex;
use crate::ids::{AgentId, DecisionId, Purpose};
use crate::task::{Task, TaskFacts};
use crate::time::Timestamp;
use cedar_policy::{
    Authorizer, Context, Entities, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet,
    Request, Response, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

/// The policies of a deployment, parsed and validated once, ready to decide.
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
    agent_type: EntityTypeName,
    purpose_type: EntityTypeName,
    actions: HashMap<String, EntityUid>,
    systems: HashMap<String, EntityUid>,
    /// SHA-256 of every policy file's name and text; each audit record names it.
    hash: String,
    /// The files hashed, by name without folders, in name order: what the store keeps under
    /// the hash so a recorded decision can be replayed (`Store::keep_policy_set`).
    files: Vec<(String, String)>,
    /// Actions the config gates behind approval, with the group that decides (the system owner).
    approval_actions: HashMap<String, String>,
    /// Each permit's `@approval` group, by policy id, read once at load: `PolicySet::annotation`
    /// parses the id it is given on every call, which cost 2% of an exchange.
    approval_groups: HashMap<String, String>,
    count: usize,
    /// The policies each (action, resource) pair evaluates; `None`: the whole set, always.
    index: Option<index::ScopeIndex>,
}

/// Where a policy came from, for error messages.
struct Origin {
    file: String,
    text_index: usize,
}

fn type_name(name: &str) -> Result<EntityTypeName, String> {
    EntityTypeName::from_str(name).map_err(|e| e.to_string())
}

fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

impl PolicyEngine {
    /// Parses `files` (path, text), gives each policy its `@id` (or `file#n`), validates the set
    /// against the schema generated from `config`, and reports every problem found.
    pub fn load(config: &Config, files: &[(String, String)]) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let schema = match Schema::from_json_value(schema::schema_json(config)) {
            Ok(schema) => Some(schema),
            Err(e) => {
                problems.push(Problem::in_file("<generated schema>", e.to_string()));
                None
            }
        };
        let mut set = PolicySet::new();
        let mut origins: HashMap<PolicyId, Origin> = HashMap::new();
        // Names without folders, in name order, so the same policies hash the same wherever they
        // are loaded from and in whatever order a reader lists them (the bundled example and
        // the same folder on disk must name one policy set).
        let mut named: Vec<(&str, &str)> = files
            .iter()
            .map(|(file, text)| (file.rsplit('/').next().unwrap_or(file), text.as_str()))
            .collect();
        named.sort_unstable();
        let mut hash_input = String::new();
        let kept: Vec<(String, String)> = named
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect();
        for (name, text) in named {
            hash_input.push_str(name);
            hash_input.push('\0');
            hash_input.push_str(text);
            hash_input.push('\0');
        }
        for (index, (file, text)) in files.iter().enumerate() {
            let parsed = match PolicySet::from_str(text) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    for error in errors.iter() {
                        problems.push(Problem::at(
                            file,
                            first_line(error, text),
                            error.to_string(),
                        ));
                    }
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push(Problem::in_file(file, "policy templates are not supported"));
            }
            for (n, policy) in parsed.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map_or_else(|| format!("{}#{}", file_stem(file), n), str::to_owned);
                let policy_id = PolicyId::new(&id);
                let line = text
                    .find(&format!("\"{id}\""))
                    .map_or(1, |at| line_of(text, at));
                if origins.contains_key(&policy_id) {
                    problems.push(Problem::at(
                        file,
                        line,
                        format!("policy id `{id}` is used twice"),
                    ));
                    continue;
                }
                if let Some(group) = policy.annotation(APPROVAL_ANNOTATION) {
                    if group.trim().is_empty() {
                        problems.push(Problem::at(
                            file,
                            line,
                            format!("policy `{id}`: @approval needs a group"),
                        ));
                    }
                    if policy.effect() != cedar_policy::Effect::Permit {
                        problems.push(Problem::at(
                            file,
                            line,
                            format!("policy `{id}`: @approval belongs on permit policies; a forbid cannot be approved"),
                        ));
                    }
                }
                if let Err(e) = set.add(policy.new_id(policy_id.clone())) {
                    problems.push(Problem::at(file, line, e.to_string()));
                    continue;
                }
                origins.insert(
                    policy_id,
                    Origin {
                        file: file.clone(),
                        text_index: index,
                    },
                );
            }
        }
        if files.is_empty() {
            problems.push(Problem::in_file(
                &config.policy_folder,
                "no .cedar policy files found",
            ));
        }
        let Some(schema) = schema else {
            return Err(problems);
        };
        let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for error in validation.validation_errors() {
            let (file, line) = match origins.get(error.policy_id()) {
                Some(origin) => {
                    let text = files.get(origin.text_index).map_or("", |(_, t)| t.as_str());
                    (origin.file.clone(), first_line(error, text))
                }
                None => ("<policies>".to_owned(), 1),
            };
            let mut message = error.to_string();
            match unknown_action_hint(config, &message) {
                Some(hint) => message.push_str(&format!(" ({hint})")),
                None => {
                    if let Some(help) = error.help() {
                        message.push_str(&format!(" ({help})"));
                    }
                }
            }
            problems.push(Problem::at(&file, line, message));
        }
        let engine =
            Self::assemble(config, schema, set, sha256_hex(hash_input.as_bytes())).map(|engine| {
                Self {
                    files: kept,
                    ..engine
                }
            });
        match engine {
            Ok(engine) if problems.is_empty() => Ok(engine),
            Ok(_) => Err(problems),
            Err(e) => {
                problems.push(Problem::in_file("<generated schema>", e));
                Err(problems)
            }
        }
    }

    fn assemble(
        config: &Config,
        schema: Schema,
        policies: PolicySet,
        hash: String,
    ) -> Result<Self, String> {
        let action_type = type_name("Action")?;
        let system_type = type_name("System")?;
        let systems_json: Vec<serde_json::Value> = config
            .systems
            .values()
            .map(|s| {
                serde_json::json!({
                    "uid": { "type": "System", "id": s.id.as_str() },
                    "attrs": { "risk": s.risk.as_str(), "owner": s.owner },
                    "parents": [],
                })
            })
            .collect();
        let entities = Entities::from_json_value(serde_json::Value::Array(systems_json), None)
            .map_err(|e| e.to_string())?;
        let action_entities = schema.action_entities().map_err(|e| e.to_string())?;
        let entities = entities
            .add_entities(action_entities.iter().cloned(), None)
            .map_err(|e| e.to_string())?;
        let mut actions = HashMap::new();
        actions.insert(
            schema::OPEN_TASK_ACTION.to_owned(),
            uid(&action_type, schema::OPEN_TASK_ACTION),
        );
        let mut systems = HashMap::new();
        let mut approval_actions = HashMap::new();
        for system in config.systems.values() {
            for short in &system.require_approval {
                approval_actions.insert(format!("{}:{short}", system.id), system.owner.clone());
            }
            systems.insert(system.id.to_string(), uid(&system_type, system.id.as_str()));
            for action in system.actions.values() {
                actions.insert(
                    action.name.to_string(),
                    uid(&action_type, action.name.as_str()),
                );
            }
        }
        let count = policies.policies().count();
        let approval_groups = policies
            .policies()
            .filter_map(|policy| {
                policy
                    .annotation(APPROVAL_ANNOTATION)
                    .map(|group| (policy.id().to_string(), group.to_owned()))
            })
            .collect();
        let purpose_type = type_name("Purpose")?;
        let mut pairs = Vec::new();
        for system in config.systems.values() {
            for action in system.actions.values() {
                pairs.push((
                    uid(&action_type, action.name.as_str()),
                    uid(&system_type, system.id.as_str()),
                ));
            }
        }
        for purpose in config.purposes.keys() {
            pairs.push((
                uid(&action_type, schema::OPEN_TASK_ACTION),
                uid(&purpose_type, purpose.as_str()),
            ));
        }
        let index = index::ScopeIndex::build(&policies, &entities, pairs)?;
        Ok(Self {
            schema,
            policies,
            entities,
            authorizer: Authorizer::new(),
            agent_type: type_name("Agent")?,
            purpose_type,
            actions,
            systems,
            hash,
            files: Vec::new(),
            approval_actions,
            approval_groups,
            count,
            index: Some(index),
        })
    }

    /// The same engine evaluating the whole policy set for every request: what the scope index
    /// must agree with (the index's equivalence test, and the benchmark's baseline).
    #[doc(hidden)]
    pub fn without_index(mut self) -> Self {
        self.index = None;
        self
    }

    /// The most policies one request evaluates (all of them without the index).
    pub fn widest_evaluation(&self) -> usize {
        self.index
            .as_ref()
            .map_or(self.count, index::ScopeIndex::widest)
    }

    /// The content hash of the policy set the decisions were made with.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The policy files this set was loaded from (name, text), in name order: loading them
    /// again under the same config gives the same set and the same [`PolicyEngine::hash`].
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// May `agent` open a task for `purpose` with this context?
    pub fn decide_open(
        &self,
        agent: &AgentId,
        purpose: &Purpose,
        context: Result<Context, String>,
    ) -> OpenDecision {
        let outcome = context.and_then(|context| {
            let action = self
                .actions
                .get(schema::OPEN_TASK_ACTION)
                .ok_or_else(|| "the open_task action is missing".to_owned())?;
            let resource = uid(&self.purpose_type, purpose.as_str());
            let (policies, _) = self.scoped(action, &resource);
            self.evaluate(
                uid(&self.agent_type, agent.as_str()),
                action.clone(),
                resource,
                context,
                policies,
            )
        });
        match outcome {
            Ok(Verdict::Allow(policies)) => OpenDecision::Allow { policies },
            Ok(Verdict::Deny(reason, policies, description)) => OpenDecision::Deny {
                reason,
                policies,
                description,
            },
            Err(e) => OpenDecision::Deny {
                reason: DenyReason::PolicyError,
                policies: Vec::new(),
                description: format!("the request could not be evaluated: {e}"),
            },
        }
    }

    /// Decides one exchange. Every action in the grant must be allowed or nothing is.
    pub fn decide(
        &self,
        decision_id: DecisionId,
        task: &Task,
        facts: &TaskFacts,
        request: &RequestFacts<'_>,
        grant: Grant,
        now: Timestamp,
    ) -> Decision {
        let deny = |reason, policies, description| {
            Decision::Deny(Denial {
                decision_id: decision_id.clone(),
                reason,
                description,
                policies,
            })
        };
        let Some(resource) = self.systems.get(grant.system.as_str()) else {
            return deny(
                DenyReason::PolicyError,
                Vec::new(),
                "unknown system".to_owned(),
            );
        };
        if grant.actions.is_empty() {
            return deny(
                DenyReason::NoPermit,
                Vec::new(),
                "no action was requested".to_owned(),
            );
        }
        // Each action's policies first: the context is built once, with what any of them reads.
        let mut scoped = Vec::with_capacity(grant.actions.len());
        for action in &grant.actions {
            let Some(action_uid) = self.actions.get(action.name.as_str()) else {
                return deny(
                    DenyReason::PolicyError,
                    Vec::new(),
                    format!("unknown action `{}`", action.name),
                );
            };
            let (policies, reads) = self.scoped(action_uid, resource);
            scoped.push((action, action_uid, policies, reads));
        }
        let needs = |record: &str, field: &str| {
            scoped
                .iter()
                .any(|(_, _, _, reads)| reads.needs(record, field))
        };
        let context = match context::exchange_context_reading(task, facts, request, now, &needs) {
            Ok(context) => context,
            Err(e) => return deny(DenyReason::PolicyError, Vec::new(), format!("context: {e}")),
        };
        // The workload asking: the task's agent, or a delegate acting in its task.
        let principal = uid(&self.agent_type, grant.agent.as_str());
        let mut determining = BTreeSet::new();
        for (action, action_uid, policies, _) in &scoped {
            match self.evaluate(
                principal.clone(),
                (*action_uid).clone(),
                resource.clone(),
                context.clone(),
                policies,
            ) {
                Ok(Verdict::Allow(policies)) => determining.extend(policies),
                Ok(Verdict::Deny(reason, policies, description)) => {
                    return deny(
                        reason,
                        policies,
                        format!("`{}`: {description}", action.name),
                    );
                }
                Err(e) => return deny(DenyReason::PolicyError, Vec::new(), e),
            }
        }
        // A determining permit's `@approval("group")`, or the system's config, gates the permit.
        let group = determining
            .iter()
            .find_map(|id| self.approval_groups.get(id.as_str()))
            .cloned()
            .or_else(|| {
                grant
                    .actions
                    .iter()
                    .find_map(|a| self.approval_actions.get(a.name.as_str()).cloned())
            });
        let permit = Permit::new(decision_id, grant, determining.into_iter().collect());
        match group {
            Some(group) => Decision::Gate(Box::new(GatedPermit::new(permit, group))),
            None => Decision::Allow(Box::new(permit)),
        }
    }

    /// The policies `action` on `resource` evaluates (the index's pick, or the whole set), and
    /// what of the exchange context they can read.
    fn scoped(&self, action: &EntityUid, resource: &EntityUid) -> (&PolicySet, &reads::Reads) {
        match self
            .index
            .as_ref()
            .and_then(|index| index.get(action, resource))
        {
            Some(scoped) => (&scoped.policies, &scoped.reads),
            None => (&self.policies, &reads::EVERYTHING),
        }
    }

    fn evaluate(
        &self,
        principal: EntityUid,
        action: EntityUid,
        resource: EntityUid,
        context: Context,
        policies: &PolicySet,
    ) -> Result<Verdict, String> {
        let request =
            Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(&request, policies, &self.entities);
        Ok(verdict(&response))
    }
}

enum Verdict {
    Allow(Vec<String>),
    Deny(DenyReason, Vec<String>, String),
}

fn verdict(response: &Response) -> Verdict {
    // Cedar reports the determining policies and errors as sets: sorted, a decision (and its
    // record) reads the same however the set was evaluated.
    let mut policies: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    policies.sort_unstable();
    let mut errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(ToString::to_string)
        .collect();
    errors.sort_unstable();
    match response.decision() {
        cedar_policy::Decision::Deny if !policies.is_empty() => {
            let description = format!("forbidden by {}", policies.join(", "));
            Verdict::Deny(DenyReason::Forbidden, policies, description)
        }
        // Fail closed: a policy that errored might have been a forbid, so any error denies.
        _ if !errors.is_empty() => {
            Verdict::Deny(DenyReason::PolicyError, Vec::new(), errors.join("; "))
        }
        cedar_policy::Decision::Allow => Verdict::Allow(policies),
        cedar_policy::Decision::Deny => Verdict::Deny(
            DenyReason::NoPermit,
            Vec::new(),
            "no policy permits this".to_owned(),
        ),
    }
}

fn first_line(error: &dyn Diagnostic, text: &str) -> usize {
    error
        .labels()
        .and_then(|mut labels| labels.next())
        .map_or(1, |label| line_of(text, label.offset()))
}

/// For "unrecognized action" errors, says which system should have offered the action.
fn unknown_action_hint(config: &Config, message: &str) -> Option<String> {
    let start =
        message.find("unrecognized action `Action::\"")? + "unrecognized action `Action::\"".len();
    let name = message.get(start..)?.split('"').next()?;
    let (system, _) = name.split_once(':')?;
    Some(
        match config.systems.get(&crate::ids::SystemId::new(system)) {
            Some(found) => format!(
                "no system offers `{name}`; `{system}` offers: {}",
                found.actions.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            None => format!("no system `{system}` is declared"),
        },
    )
}

fn file_stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_suffix(".cedar").unwrap_or(name)
}
