//! The sealed-file layout (from `dsops-store`).

pub(crate) use dsops_store::envelope::{Unsealed, open, seal};
