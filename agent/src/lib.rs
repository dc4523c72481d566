//! The dsops agent: the process on a bastion host inside a network segment.
//!
//! It will hold the segment's admin credentials (encrypted at rest), keep one outbound mTLS
//! session with the control plane, and run rotation steps with its adapters and secret stores,
//! returning a signed receipt for each (see `DESIGN.md` section 2). The executor, adapters and
//! stores arrive with the rotation-engine issue, enrolment and sessions with the remote-agent
//! issue; today the crate only fixes its place in the workspace and its dependency on the wire
//! contract ([`dsops_proto`]).

pub use dsops_proto as proto;
