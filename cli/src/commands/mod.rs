//! One module per command.

pub mod catalog;
pub mod completions;
pub mod describe;
pub mod list;
pub mod plan;
pub mod validate;
