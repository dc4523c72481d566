//! Reading user-written files: a YAML tree that remembers where every value came from, the
//! diagnostics that point back into the file, and a field reader that reports unknown keys with a
//! "did you mean" hint.

mod diagnostic;
mod fields;
mod yaml;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub(crate) use fields::join;
pub use fields::{Fields, suggest, unknown_hinted, unknown_name};
pub(crate) use yaml::unescape_pointer_token;
pub use yaml::{Node, Pos, ScalarKind, Value, parse_yaml};
