//! Incident queries over the audit log: the records matching every filter given, a bounded page
//! at a time, with a cursor to the next page. One page reads at most [`MAX_SCAN`] records, so a
//! rare match costs several pages rather than one unbounded read.

use crate::audit::{AuditEvent, Outcome, SealedRecord};
use crate::ids::TaskId;
use crate::store::{Store, StoreError};
use crate::time::Timestamp;

/// Records a page returns by default, and at most.
pub const DEFAULT_QUERY_LIMIT: usize = 100;
pub const MAX_QUERY_LIMIT: usize = 500;
/// Records one page reads from the store at most before it answers (with a cursor).
pub const MAX_SCAN: usize = 10_000;
const READ: usize = 1_000;

/// What to look for; every filter given must match (none: every record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub agent: Option<String>,
    pub user: Option<String>,
    pub system: Option<String>,
    /// `git:push`, or `push` for that action of any system.
    pub action: Option<String>,
    pub task: Option<String>,
    pub decision: Option<Outcome>,
    /// The reason code of a deny (`no_permit`, `forbidden`, ...).
    pub reason: Option<String>,
    /// A policy id among the record's determining policies.
    pub policy: Option<String>,
    /// Records written at or after this.
    pub since: Option<Timestamp>,
    /// Records written before this.
    pub until: Option<Timestamp>,
}

/// One page of matches, and where the next page starts (`None`: the log's end was reached).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    pub records: Vec<(SealedRecord, AuditEvent)>,
    pub next: Option<u64>,
}

impl AuditQuery {
    /// Whether the record written at `at` with `event` matches.
    pub fn matches(&self, at: Timestamp, event: &AuditEvent) -> bool {
        let is = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        is(&self.agent, &event.agent)
            && is(&self.user, &event.user)
            && is(&self.system, &event.system)
            && is(&self.task, &event.task)
            && is(&self.reason, &event.reason)
            && self.decision.is_none_or(|d| event.outcome == Some(d))
            && self.action.as_ref().is_none_or(|want| {
                event
                    .actions
                    .iter()
                    .any(|a| a == want || a.split_once(':').is_some_and(|(_, short)| short == want))
            })
            && self
                .policy
                .as_ref()
                .is_none_or(|p| event.policies.iter().any(|have| have == p))
            && self.since.is_none_or(|since| at >= since)
            && self.until.is_none_or(|until| at < until)
    }
}

/// The records after `after` that match `query`, at most `limit` (clamped to
/// 1..=[`MAX_QUERY_LIMIT`]). Records whose body cannot be read are skipped (`audit verify` names
/// them).
pub async fn query(
    store: &dyn Store,
    query: &AuditQuery,
    after: u64,
    limit: usize,
) -> Result<AuditPage, StoreError> {
    let limit = limit.clamp(1, MAX_QUERY_LIMIT);
    let mut records = Vec::new();
    // A task's records are read by task; any other query walks the log.
    if let Some(task) = &query.task {
        let all = store.task_records(&TaskId::new(task)).await?;
        let mut rest = all.into_iter().filter(|r| r.seq > after);
        for record in rest.by_ref() {
            if let Some(event) = matching(query, &record) {
                records.push((record, event));
                if records.len() == limit {
                    break;
                }
            }
        }
        let next = if rest.next().is_some() {
            records.last().map(|(r, _)| r.seq)
        } else {
            None
        };
        return Ok(AuditPage { records, next });
    }
    let mut cursor = after;
    let mut scanned = 0;
    loop {
        let page = store.audit_page(cursor, READ).await?;
        let Some(last) = page.last().map(|r| r.seq) else {
            return Ok(AuditPage {
                records,
                next: None,
            });
        };
        for record in page {
            cursor = record.seq;
            scanned += 1;
            if let Some(event) = matching(query, &record) {
                records.push((record, event));
                if records.len() == limit {
                    return Ok(AuditPage {
                        records,
                        next: Some(cursor),
                    });
                }
            }
        }
        if scanned >= MAX_SCAN {
            return Ok(AuditPage {
                records,
                next: Some(last),
            });
        }
    }
}

fn matching(query: &AuditQuery, record: &SealedRecord) -> Option<AuditEvent> {
    let event = record.event().ok()?;
    query.matches(record.at, &event).then_some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_given_must_match() {
        let event = AuditEvent {
            agent: Some("a".to_owned()),
            system: Some("git".to_owned()),
            actions: vec!["git:push".to_owned()],
            outcome: Some(Outcome::Deny),
            policies: vec!["p1".to_owned()],
            ..AuditEvent::default()
        };
        let at = Timestamp::from_millis(5);
        let q = |f: fn(&mut AuditQuery)| {
            let mut query = AuditQuery::default();
            f(&mut query);
            query.matches(at, &event)
        };
        assert!(q(|_| {}));
        assert!(q(|q| q.action = Some("push".to_owned())));
        assert!(q(|q| q.action = Some("git:push".to_owned())));
        assert!(!q(|q| q.action = Some("pull".to_owned())));
        assert!(q(|q| q.policy = Some("p1".to_owned())));
        assert!(!q(|q| q.policy = Some("p2".to_owned())));
        assert!(!q(|q| q.decision = Some(Outcome::Permit)));
        assert!(!q(|q| q.user = Some("u".to_owned())));
        assert!(q(|q| q.since = Some(Timestamp::from_millis(5))));
        assert!(!q(|q| q.until = Some(Timestamp::from_millis(5))));
        assert!(!q(|q| {
            q.agent = Some("a".to_owned());
            q.system = Some("ci".to_owned());
        }));
    }
}
