//! The dsops wire contract.
//!
//! This crate is what every other dsops crate shares: the gRPC services generated from
//! `proto/` (wire types, loose), the domain types they are converted into once on the receiving
//! side (strict, [`TryFrom`] with a [`ProtocolError`]), and the one table that maps dsops error
//! codes to gRPC and HTTP statuses ([`ErrorCode`]). It does no I/O.
//!
//! ```text
//!   wire (prost, every field optional) ──TryFrom──▶ domain (validated)   ──into()──▶ wire
//!                                         │
//!                                         └─ ProtocolError { field, reason } → INVALID_ARGUMENT
//! ```

pub mod domain;
pub mod error;
pub mod trace;

pub use domain::ProtocolError;

/// Milliseconds since the Unix epoch of `time` (0 before the epoch): how dsops stores and sends
/// instants.
pub fn unix_ms(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The wall clock now, in milliseconds since the Unix epoch (what a proposing node stamps on a
/// request; `apply` never reads a clock).
pub fn now_ms() -> u64 {
    unix_ms(std::time::SystemTime::now())
}

/// Lower-case hex of some bytes (digests, fingerprints, random ids).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// Decodes hex (either case); `None` for odd lengths or non-hex characters.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

pub use error::ErrorCode;

/// Generated code, laid out as the protobuf packages are (the generated code refers to sibling
/// packages by relative path). Use it through [`wire`].
#[allow(missing_docs, missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod generated {
    /// `dsops.*`
    pub mod dsops {
        /// `dsops.common`
        pub mod common {
            /// `dsops.common.v1`: steps, outcomes, receipts, error info.
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/dsops.common.v1.rs"));
            }
        }
        /// `dsops.raft`
        pub mod raft {
            /// `dsops.raft.v1`: the raft peer service.
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/dsops.raft.v1.rs"));
            }
        }
        /// `dsops.agent`
        pub mod agent {
            /// `dsops.agent.v1`: agent enrolment and sessions.
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/dsops.agent.v1.rs"));
            }
        }
        /// `dsops.admin`
        pub mod admin {
            /// `dsops.admin.v1`: the operator API used by the CLI.
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/dsops.admin.v1.rs"));
            }
        }
    }
}

/// Wire types and service stubs, one module per protobuf package (current versions).
pub mod wire {
    pub use crate::generated::dsops::admin::v1 as admin;
    pub use crate::generated::dsops::agent::v1 as agent;
    pub use crate::generated::dsops::common::v1 as common;
    pub use crate::generated::dsops::raft::v1 as raft;
}
