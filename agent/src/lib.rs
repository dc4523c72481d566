//! The dsops agent: the process on a bastion host inside a network segment.
//!
//! It holds the segment's admin credentials (encrypted at rest), runs rotation steps with its
//! adapters and secret stores, and returns a signed receipt for each (the protocol is in
//! `docs/rotation.md`). It links no control-plane code: configuration comes through
//! `dsops-config`, its identity and channels through `dsops-identity`.
//!
//! ```text
//!   control plane ── Job{run, generation, step} ──▶ session / in_process ──▶ Executor
//!         ▲                                                                   │ strategy (random,
//!         │                                                                   │ immediate, two-key,
//!         │                                                                   │ hook) ──▶ adapter::Target
//!         │                                                                   │        └▶ secret store
//!         └──────────────────────── signed Receipt ◀──────────────────────────┘
//! ```
//!
//! `host` enrols the agent and runs its sessions (the `dsops-agent` binary); `from_config` builds
//! its configuration (stores, services, hooks) from a `dsops.yaml`. `notify` delivers the
//! notifications the control plane sends over the session (Slack, webhook, PagerDuty).
//!
//! Secret values live in [`SecretValue`], which prints `***` and is zeroized on drop; outside
//! the agent a value is known only by its keyed [fingerprint](secret::Fingerprinter).

pub mod acme;
pub(crate) mod acme_http;
pub mod adapter;
pub mod aws;
pub mod certificate;
pub mod config;
mod envelope;
pub mod executor;
pub mod from_config;
pub mod generate;
pub mod health;
pub mod hook;
pub mod host;
pub mod http_keys;
pub mod identity;
pub mod in_process;
pub mod notify;
pub mod preflight;
pub mod redact;
pub mod sealed;
pub mod secret;
pub mod session;
pub mod store;
mod strategy;

pub use dsops_proto as proto;
pub use secret::SecretValue;
