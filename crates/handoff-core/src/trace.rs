//! The spans of an exchange's stages (identity, resolve, task load, admit, decide, mint, audit
//! commit): `tracing` spans at target [`SPAN_TARGET`], which the server times into
//! `handoff_stage_duration_seconds` and, where OpenTelemetry is on, exports as children of the
//! request's span. The core only names them; what listens is the binary's choice, and where
//! nothing does, a span is disabled and costs a check.

/// The target of every span Handoff makes for tracing (the same as `handoff_http::trace::TARGET`).
pub const SPAN_TARGET: &str = "handoff::span";

/// The span of the stage named `$name` (a literal: span names are static).
macro_rules! stage {
    ($name:literal) => {
        tracing::info_span!(target: $crate::trace::SPAN_TARGET, $name)
    };
}
pub(crate) use stage;
