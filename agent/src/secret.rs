//! Secret values and their fingerprints (from `dsops-store`, which the file store shares).

pub use dsops_store::secret::{Fingerprinter, SecretValue, random_bytes};
