//! `handoff audit export --format ocsf`: every exported event validates against the OCSF 1.4.0
//! class and object definitions shipped in `testdata/ocsf/` (copied from the public schema;
//! the validator below is written here from the schema's own rules, not from the mapping), and
//! `--after`, `--since` and `--follow` select exactly.

use crate::harness::{Server, binary, cli, stderr, stdout, temp_dir};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/ocsf")
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// One attribute as a class or object defines it: the dictionary's entry with every definition
/// along the `extends` chain laid over it (enums are the union), and the profile it came from.
#[derive(Clone, Debug, Default)]
struct Attribute {
    def: Map<String, Value>,
    profile: Option<String>,
}

/// The OCSF schema as shipped: the dictionary, the classes exported to and the objects they use.
struct Schema {
    root: PathBuf,
    version: String,
    dictionary: Map<String, Value>,
    types: Map<String, Value>,
    /// class_uid -> (category uid, caption, attributes).
    classes: BTreeMap<u64, (u64, String, BTreeMap<String, Attribute>)>,
    categories: BTreeMap<u64, String>,
    /// `observable.type_id`s the schema defines (types, attributes and objects marked observable).
    observable_ids: BTreeMap<u64, String>,
}

fn overlay(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (key.as_str(), into.get_mut(key), value) {
            ("enum", Some(Value::Object(existing)), Value::Object(more)) => {
                for (id, item) in more {
                    existing.insert(id.clone(), item.clone());
                }
            }
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

impl Schema {
    fn load() -> Self {
        let root = schema_dir();
        let version = read(&root.join("version.json"))["version"]
            .as_str()
            .unwrap()
            .to_owned();
        let dictionary_file = read(&root.join("dictionary.json"));
        let dictionary = dictionary_file["attributes"].as_object().unwrap().clone();
        let types = dictionary_file["types"]["attributes"]
            .as_object()
            .unwrap()
            .clone();
        let mut category_uids = BTreeMap::new();
        let mut categories = BTreeMap::new();
        for (name, category) in read(&root.join("categories.json"))["attributes"]
            .as_object()
            .unwrap()
        {
            let uid = category["uid"].as_u64().unwrap();
            category_uids.insert(name.clone(), uid);
            categories.insert(uid, category["caption"].as_str().unwrap().to_owned());
        }
        let mut observable_ids = BTreeMap::new();
        observable_ids.insert(0, "Unknown".to_owned());
        observable_ids.insert(99, "Other".to_owned());
        for (_, def) in types.iter().chain(dictionary.iter()) {
            if let Some(id) = def["observable"].as_u64() {
                observable_ids.insert(id, def["caption"].as_str().unwrap().to_owned());
            }
        }
        for entry in std::fs::read_dir(root.join("objects")).unwrap() {
            let object = read(&entry.unwrap().path());
            if let Some(id) = object["observable"].as_u64() {
                observable_ids.insert(id, object["caption"].as_str().unwrap().to_owned());
            }
        }
        let mut schema = Self {
            root,
            version,
            dictionary,
            types,
            classes: BTreeMap::new(),
            categories,
            observable_ids,
        };
        for file in [
            "events/application/api_activity.json",
            "events/application/application_lifecycle.json",
        ] {
            let class = read(&schema.root.join(file));
            let (attributes, category) = schema.event_chain(file);
            let category_uid = category_uids[&category.unwrap()];
            let class_uid = category_uid * 1000 + class["uid"].as_u64().unwrap();
            let caption = class["caption"].as_str().unwrap().to_owned();
            schema
                .classes
                .insert(class_uid, (category_uid, caption, attributes));
        }
        schema
    }

    /// An event class's attributes, `extends` first (base_event, its category), and its category.
    fn event_chain(&self, file: &str) -> (BTreeMap<String, Attribute>, Option<String>) {
        let class = read(&self.root.join(file));
        let (mut attributes, mut category) = match class["extends"].as_str() {
            Some("base_event") => self.event_chain("events/base_event.json"),
            Some(parent) => self.event_chain(&format!("events/{parent}/{parent}.json")),
            None => (BTreeMap::new(), None),
        };
        if let Some(own) = class["category"].as_str() {
            category = Some(own.to_owned());
        }
        self.lay_over(&mut attributes, &class);
        (attributes, category)
    }

    /// An object's attributes, `extends` first.
    fn object(&self, name: &str) -> (BTreeMap<String, Attribute>, Value) {
        let path = self.root.join(format!("objects/{name}.json"));
        assert!(
            path.is_file(),
            "object `{name}` is not among the shipped definitions"
        );
        let object = read(&path);
        let mut attributes = match object["extends"].as_str() {
            Some(parent) => self.object(parent).0,
            None => BTreeMap::new(),
        };
        self.lay_over(&mut attributes, &object);
        (attributes, object)
    }

    /// Lays a class's or object's definitions (its included profiles first) over `attributes`.
    fn lay_over(&self, attributes: &mut BTreeMap<String, Attribute>, definition: &Value) {
        let Some(own) = definition["attributes"].as_object() else {
            return;
        };
        for include in own
            .get("$include")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let profile = read(&self.root.join(include.as_str().unwrap()));
            let name = profile["name"].as_str().unwrap().to_owned();
            for (attribute, def) in profile["attributes"].as_object().unwrap() {
                let entry = self.entry(attributes, attribute);
                overlay(&mut entry.def, def.as_object().unwrap());
                entry.profile = Some(name.clone());
            }
        }
        for (attribute, def) in own {
            if attribute == "$include" {
                continue;
            }
            let entry = self.entry(attributes, attribute);
            overlay(&mut entry.def, def.as_object().unwrap());
            entry.profile = None;
        }
    }

    fn entry<'a>(
        &self,
        attributes: &'a mut BTreeMap<String, Attribute>,
        name: &str,
    ) -> &'a mut Attribute {
        attributes
            .entry(name.to_owned())
            .or_insert_with(|| Attribute {
                def: self
                    .dictionary
                    .get(name)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_else(|| panic!("`{name}` is not in the dictionary")),
                profile: None,
            })
    }
}

/// Every way `value` breaks the schema, as `path: problem` lines.
struct Check<'a> {
    schema: &'a Schema,
    problems: Vec<String>,
}

impl Check<'_> {
    fn fail(&mut self, path: &str, problem: String) {
        self.problems.push(format!("{path}: {problem}"));
    }

    fn event(&mut self, event: &Value) {
        let schema = self.schema;
        let Some(class_uid) = event["class_uid"].as_u64() else {
            return self.fail("class_uid", "missing".to_owned());
        };
        let Some((category_uid, caption, attributes)) = schema.classes.get(&class_uid) else {
            return self.fail("class_uid", format!("{class_uid} is not a shipped class"));
        };
        if event["category_uid"].as_u64() != Some(*category_uid) {
            self.fail("category_uid", format!("is not {category_uid}"));
        }
        if let Some(name) = event.get("class_name")
            && name.as_str() != Some(caption)
        {
            self.fail("class_name", format!("{name} is not `{caption}`"));
        }
        if let Some(name) = event.get("category_name") {
            let expected = &schema.categories[category_uid];
            if name.as_str() != Some(expected) {
                self.fail("category_name", format!("{name} is not `{expected}`"));
            }
        }
        let activity = event["activity_id"].as_u64().unwrap_or(u64::MAX);
        if event["type_uid"].as_u64() != Some(class_uid * 100 + activity) {
            self.fail(
                "type_uid",
                format!("{} is not class_uid * 100 + activity_id", event["type_uid"]),
            );
        }
        if event["metadata"]["version"].as_str() != Some(&schema.version) {
            self.fail("metadata.version", format!("is not {}", schema.version));
        }
        let profiles: BTreeSet<&str> = event["metadata"]["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // The generated enums (classes, categories, types) were checked above.
        let generated = ["class_uid", "category_uid", "type_uid"];
        self.members("", event, attributes, &profiles, &generated);
    }

    /// Required attributes present, every member defined, each value of its type.
    fn members(
        &mut self,
        path: &str,
        value: &Value,
        attributes: &BTreeMap<String, Attribute>,
        profiles: &BTreeSet<&str>,
        generated: &[&str],
    ) {
        let Some(members) = value.as_object() else {
            return self.fail(path, format!("{value} is not an object"));
        };
        for (name, attribute) in attributes {
            let applies = attribute
                .profile
                .as_deref()
                .is_none_or(|p| profiles.contains(p));
            if applies
                && attribute.def.get("requirement").and_then(Value::as_str) == Some("required")
                && !members.contains_key(name)
            {
                self.fail(path, format!("required `{name}` is missing"));
            }
        }
        for (name, member) in members {
            let at = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let Some(attribute) = attributes.get(name) else {
                self.fail(&at, "is not an attribute here".to_owned());
                continue;
            };
            if generated.contains(&name.as_str()) {
                continue;
            }
            self.value(&at, member, &attribute.def);
            // A sibling names the enum's caption (except for Other, which carries the source's).
            if let (Some(sibling), Some(id)) = (
                attribute.def.get("sibling").and_then(Value::as_str),
                member.as_u64(),
            ) {
                let caption = self.caption(name, &attribute.def, id);
                if let (Some(given), Some(caption)) = (members.get(sibling), caption)
                    && id != 99
                    && given.as_str() != Some(&caption)
                {
                    self.fail(&at, format!("its `{sibling}` {given} is not `{caption}`"));
                }
            }
        }
    }

    fn caption(&self, name: &str, def: &Map<String, Value>, id: u64) -> Option<String> {
        if name == "type_id"
            && def.get("caption").and_then(Value::as_str) == Some("Observable Type ID")
        {
            return self.schema.observable_ids.get(&id).cloned();
        }
        def.get("enum")?[id.to_string()]["caption"]
            .as_str()
            .map(str::to_owned)
    }

    fn value(&mut self, path: &str, value: &Value, def: &Map<String, Value>) {
        let schema = self.schema;
        if def.get("is_array").and_then(Value::as_bool) == Some(true) {
            let Some(items) = value.as_array() else {
                return self.fail(path, format!("{value} is not an array"));
            };
            let mut one = def.clone();
            one.remove("is_array");
            for (n, item) in items.iter().enumerate() {
                self.value(&format!("{path}[{n}]"), item, &one);
            }
            return;
        }
        let kind = def["type"].as_str().unwrap();
        if kind == "object" {
            if !value.is_object() {
                self.fail(path, format!("{value} is not an object"));
            }
            return;
        }
        if let Some(scalar) = schema.types.get(kind) {
            let base = scalar["type"].as_str().unwrap_or(kind);
            let fits = match base {
                "integer_t" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                "long_t" => value.is_i64() || value.is_u64(),
                "float_t" => value.is_number(),
                "boolean_t" => value.is_boolean(),
                "json_t" => true,
                _ => value.is_string(),
            };
            if !fits {
                return self.fail(path, format!("{value} is not a {kind}"));
            }
            if let Some(id) = value.as_u64() {
                let known =
                    if def.get("caption").and_then(Value::as_str) == Some("Observable Type ID") {
                        Some(schema.observable_ids.contains_key(&id))
                    } else {
                        def.get("enum").map(|e| e.get(id.to_string()).is_some())
                    };
                if known == Some(false) {
                    self.fail(path, format!("{id} is not one of its enum values"));
                }
            }
            return;
        }
        // An object type: its own definitions (with its `extends` chain) and constraints.
        let (attributes, object) = schema.object(kind);
        let mut attributes = attributes;
        if kind == "observable"
            && let Some(type_id) = attributes.get_mut("type_id")
        {
            type_id
                .def
                .insert("caption".to_owned(), "Observable Type ID".into());
            type_id.def.remove("enum");
        }
        self.members(path, value, &attributes, &BTreeSet::new(), &[]);
        // The nearest `constraints` along the `extends` chain hold (a child's replace its parent's).
        let mut definition = object;
        loop {
            if let Some(one_of) = definition["constraints"]["at_least_one"].as_array() {
                if !one_of
                    .iter()
                    .any(|name| value.get(name.as_str().unwrap()).is_some())
                {
                    self.fail(path, format!("needs at least one of {one_of:?}"));
                }
                break;
            }
            let Some(parent) = definition["extends"].as_str() else {
                break;
            };
            definition = read(&schema.root.join(format!("objects/{parent}.json")));
        }
    }
}

/// The problems of one event against the shipped schema.
fn problems(schema: &Schema, event: &Value) -> Vec<String> {
    let mut check = Check {
        schema,
        problems: Vec::new(),
    };
    check.event(event);
    check.problems
}

fn export(server: &Server, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "audit",
        "export",
        "--format",
        "ocsf",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["metadata"]["sequence"].as_u64().unwrap())
        .collect()
}

const LARGE: &str =
    r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;

/// Allow, deny (by policy and by containment), a gate waiting for a person, a revocation.
async fn scenario(server: &Server) -> String {
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["ci", "git"]).await;
    let (status, _) = server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    assert_eq!(status, 403);
    let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    let (status, _) = server.exchange(&agent, &txn, "tickets", "read", &[]).await;
    assert_eq!(status, 403);
    let payer = server.identity("payments-agent");
    let (_, payments) = server.task(&payer, "payments", &["payments"]).await;
    let (status, body) = server
        .exchange(
            &payer,
            &payments,
            "payments",
            "create",
            &[("authorization_details", LARGE)],
        )
        .await;
    assert_eq!(body["error"], "authorization_pending", "{status} {body}");
    let output = cli(&[
        "revoke",
        "task",
        &task,
        "--reason",
        "incident 7",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    task
}

#[tokio::test]
async fn the_exported_events_validate_against_the_ocsf_classes() {
    let schema = Schema::load();
    assert_eq!(schema.version, handoff_core::ocsf::OCSF_VERSION);
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let task = scenario(&server).await;
    let events = export(&server, &[]);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["unmapped"]["handoff"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "task_open",
            "exchange",
            "exchange",
            "exchange",
            "task_open",
            "approval_request",
            "revoke"
        ]
    );
    for event in &events {
        let found = problems(&schema, event);
        assert!(found.is_empty(), "{found:#?}\nin {event:#}");
    }

    // The decisions as dispositions: allowed, unauthorized by policy, blocked by containment,
    // delayed for a person, access revoked.
    let by_kind = |kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["unmapped"]["handoff"]["kind"] == kind)
            .collect()
    };
    let exchanges = by_kind("exchange");
    let dispositions: Vec<(&str, u64)> = exchanges
        .iter()
        .map(|e| {
            (
                e["api"]["operation"].as_str().unwrap(),
                e["disposition_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        dispositions,
        [("ci:deploy", 26), ("ci:run_tests", 1), ("tickets:read", 2)]
    );
    let denied = exchanges[0];
    assert_eq!(denied["class_uid"], 6003);
    assert_eq!(denied["status_id"], 2);
    assert_eq!(denied["status_code"], "no_permit");
    assert_eq!(denied["actor"]["user"]["uid"], "release-bot");
    assert_eq!(denied["actor"]["session"]["uid"], task.as_str());
    assert_eq!(denied["dst_endpoint"]["svc_name"], "ci");
    assert_eq!(denied["unmapped"]["handoff"]["user"], "alice");
    let allowed = exchanges[1];
    assert_eq!(allowed["policy"]["name"], "ci-run-tests");
    assert!(
        allowed["observables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["value"] == "ci-run-tests"),
        "{allowed}"
    );
    assert_eq!(
        allowed["api"]["request"]["uid"],
        allowed["unmapped"]["handoff"]["decision_id"]
    );
    assert_eq!(by_kind("approval_request")[0]["disposition_id"], 14);
    let revoke = by_kind("revoke")[0];
    assert_eq!(revoke["disposition_id"], 24);
    assert_eq!(revoke["activity_id"], 4);

    // The chain export and the OCSF export name the same records: metadata.uid is the hash.
    let chain = cli(&[
        "audit",
        "export",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    let hashes: Vec<String> = stdout(&chain)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["hash"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let uids: Vec<&str> = events
        .iter()
        .map(|e| e["metadata"]["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, hashes);
}

/// A change to a valid event.
type Mutation = fn(&mut Value);

#[test]
fn the_validator_refuses_events_that_break_the_schema() {
    let schema = Schema::load();
    let event = serde_json::json!({
        "category_uid": 6, "class_uid": 6003, "activity_id": 99, "type_uid": 600_399,
        "time": 1, "severity_id": 1,
        "metadata": { "version": "1.4.0", "product": { "name": "Handoff" } },
        "actor": { "app_name": "Handoff" },
        "api": { "operation": "exchange" },
        "src_endpoint": { "name": "release-bot" },
    });
    assert_eq!(problems(&schema, &event), Vec::<String>::new());
    let broken = |change: fn(&mut Value)| {
        let mut event = event.clone();
        change(&mut event);
        problems(&schema, &event)
    };
    let cases: [(&str, Mutation); 8] = [
        ("type_uid", |e| e["type_uid"] = 600_301.into()),
        ("required", |e| {
            e.as_object_mut().unwrap().remove("actor");
        }),
        ("enum", |e| e["severity_id"] = 7.into()),
        ("type", |e| e["time"] = "yesterday".into()),
        ("unknown", |e| e["colour"] = "red".into()),
        ("object", |e| {
            e["api"] = serde_json::json!({ "service": { "name": "git" } })
        }),
        ("constraint", |e| {
            e["src_endpoint"] = serde_json::json!({ "port": 443 })
        }),
        ("sibling", |e| e["severity"] = "Critical".into()),
    ];
    for (what, change) in cases {
        assert!(!broken(change).is_empty(), "{what} went unnoticed");
    }
}

#[tokio::test]
async fn after_and_since_select_exactly() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    scenario(&server).await;
    let all = export(&server, &[]);
    let every = seqs(&all);
    assert_eq!(every, (1..=every.len() as u64).collect::<Vec<_>>());
    assert_eq!(seqs(&export(&server, &["--after", "3"])), every[3..]);
    assert!(export(&server, &["--after", &every.len().to_string()]).is_empty());
    // --since: at or after the time of a record in the middle (records of one millisecond
    // included or excluded together).
    let middle = &all[all.len() / 2];
    let since = middle["time"].as_i64().unwrap();
    let expected: Vec<u64> = all
        .iter()
        .filter(|e| e["time"].as_i64().unwrap() >= since)
        .map(|e| e["metadata"]["sequence"].as_u64().unwrap())
        .collect();
    assert!(
        !expected.is_empty() && expected.len() < all.len(),
        "{expected:?}"
    );
    assert_eq!(
        seqs(&export(&server, &["--since", &since.to_string()])),
        expected
    );
    let both = export(&server, &["--since", &since.to_string(), "--after", "1"]);
    assert_eq!(
        seqs(&both),
        expected
            .iter()
            .copied()
            .filter(|s| *s > 1)
            .collect::<Vec<_>>()
    );
    // Bad input is refused as usage, before anything is written.
    for bad in [
        vec!["--since", "yesterday"],
        vec!["--format", "chain", "--since", "0"],
        vec!["--format", "chain", "--follow"],
    ] {
        let mut args = vec![
            "audit",
            "export",
            "--data-dir",
            server.data_dir.to_str().unwrap(),
        ];
        if bad[0] != "--format" {
            args.extend(["--format", "ocsf"]);
        }
        args.extend(bad.iter().copied());
        let output = cli(&args);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{bad:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty());
    }
}

#[tokio::test]
async fn follow_prints_a_record_made_after_it_started_and_ends_on_sigterm() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let before = export(&server, &[]).len() as u64;
    let mut child = Command::new(binary())
        .args([
            "audit",
            "export",
            "--format",
            "ocsf",
            "--follow",
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if lines.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    let bound = Duration::from_secs(30);
    // What was there when it started comes first...
    for seq in 1..=before {
        let event = received.recv_timeout(bound).expect("the existing records");
        assert_eq!(event["metadata"]["sequence"], seq);
    }
    // ...then a record made after it started, as it commits.
    let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    let event = received
        .recv_timeout(bound)
        .expect("the new record is followed");
    assert_eq!(event["metadata"]["sequence"], before + 1);
    assert_eq!(event["api"]["operation"], "ci:run_tests");
    let found = problems(&Schema::load(), &event);
    assert!(found.is_empty(), "{found:#?}");

    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            panic!("--follow did not end on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
