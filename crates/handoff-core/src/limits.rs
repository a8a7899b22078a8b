//! Limits on request fields, so no input can grow a record without bound, and on retries, so no
//! busy task can keep a request deciding forever. Every door checks against these.

/// Characters of a task's intent, kept verbatim.
pub const MAX_INTENT_CHARS: usize = 4096;
/// Characters of one identifier (a user, a resource, a task, an agent, a delegate).
pub const MAX_NAME_CHARS: usize = 256;
/// Actions one exchange or delegation may name.
pub const MAX_SCOPE_ITEMS: usize = 32;
/// Systems one task's plan may name.
pub const MAX_PLAN_ITEMS: usize = 64;
/// Characters of an operator's or approver's reason.
pub const MAX_REASON_CHARS: usize = 1024;
/// Attempts to decide on fresh facts when a concurrent write changed the task first.
pub(crate) const CONFLICT_RETRIES: usize = 16;
