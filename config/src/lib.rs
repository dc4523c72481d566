//! dsops configuration and service catalog: what the operator wrote and what the catalog says,
//! validated before anything is replicated or run.
//!
//! This crate runs no server and opens no connection; the CLI, the agent and the control plane
//! all read configuration through it. Every reader reports *all* problems of a file at once,
//! each with file, line, column and field path ([`document::Diagnostic`]).
//!
//! ```text
//!  dsops.yaml ──parse──▶ document::Node tree ──validate──▶ config::Config ─┐
//!  dsops-data/ (bundled) + rotation.dataDir ──load──▶ catalog::Catalog ────┴─▶ plan::plan
//! ```
//!
//! | module       | holds                                                               |
//! |--------------|---------------------------------------------------------------------|
//! | [`document`] | YAML documents with positions, field readers, diagnostics, hints    |
//! | [`time`]     | durations, cron schedules, maintenance windows                      |
//! | [`catalog`]  | the service catalog (dsops-data layout): types, instances, policies |
//! | [`config`]   | `dsops.yaml`: secret stores, services, environments, resolution     |
//! | [`plan`]     | what rotates when, per environment                                  |
//! | [`value_format`] | what generated values look like (charsets, patterns)            |

pub mod catalog;
pub mod config;
pub mod document;
pub mod plan;
pub mod time;
pub mod value_format;
