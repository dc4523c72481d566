//! Client identity for dsops: how an agent, the CLI or a joining node proves who it is and
//! checks it reached the right cluster.
//!
//! Shared by the agent, the CLI and the server; it depends on no server code.
//!
//! ```text
//!  token::JoinToken (DSJ1/DSA1: CA fingerprint + secret)
//!      │ pins the cluster's CA
//!      ▼
//!  tls::pinned_client_config ──▶ channel::channel ──▶ join / enrol call with new_csr()
//!                                                        │ signed certificate back
//!                                                        ▼
//!  CertifiedKey + peer CA ──▶ tls::client_config ──▶ channel::channel (mTLS from then on)
//! ```
//!
//! | module          | holds                                                            |
//! |-----------------|------------------------------------------------------------------|
//! | [`certificate`] | [`CertifiedKey`], [`PkiError`], subjects, [`new_csr`]            |
//! | [`tls`]         | server names, client configurations (trusted CA or pinned)       |
//! | `channel`       | a lazily connecting gRPC channel over that TLS configuration (feature `channel`, default) |
//! | [`token`]       | join and enrolment tokens                                        |
//! | [`credentials`] | the operator bundle (`ca.pem`, `operator.pem`, `operator.key`)   |
//! | [`files`]       | atomic writes of key material (keys mode 0600)                   |

pub mod certificate;
#[cfg(feature = "channel")]
pub mod channel;
pub mod credentials;
pub mod files;
pub mod tls;
pub mod token;

pub use certificate::{
    CertifiedKey, PkiError, certificate_pem, distinguished_name, new_csr, pem_to_der, sign_message,
    verify_message,
};
#[cfg(feature = "channel")]
pub use channel::{ChannelError, channel};
pub use credentials::Credentials;
pub use files::{create_private_dir, write_private, write_public};
pub use tls::{API_SERVER_NAME, RAFT_SERVER_NAME, client_config, pinned_client_config};
pub use token::JoinToken;

use sha2::{Digest, Sha256};

/// SHA-256 of a certificate's DER bytes, lower-case hex: how a join token pins the cluster.
pub fn fingerprint(der: &[u8]) -> String {
    dsops_proto::hex(&Sha256::digest(der))
}
