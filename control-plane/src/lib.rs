//! The dsops control plane.
//!
//! Today this crate holds what the control plane knows before anything is replicated: the
//! validated user configuration (`dsops.yaml`, [`config`]), the service catalog that says what
//! can be rotated and how ([`catalog`]), and the plan derived from both ([`plan`]). Every reader
//! reports *all* problems of a file at once, each with file, line, column and field path
//! ([`source::Diagnostic`]).
//!
//! ```text
//!  dsops.yaml ──parse──▶ source::Node tree ──validate──▶ config::Config ─┐
//!  dsops-data/ (bundled) + rotation.dataDir ──load──▶ catalog::Catalog ──┴─▶ plan::Plan
//! ```

pub mod control;
pub mod node;
pub mod pki;
// openraft's traits fix the (large) StorageError type of every storage function.
#[allow(clippy::result_large_err)]
pub mod raft;
pub mod rotation;
