//! One module per command.

pub mod agent;
pub mod apply;
pub mod approval;
pub mod audit;
pub mod catalog;
pub mod cluster;
pub mod completions;
pub mod compliance;
pub mod describe;
pub mod enforce;
pub mod evidence;
pub mod health;
pub mod list;
pub mod operator;
pub mod plan;
pub mod promotion;
pub mod reports;
pub mod rotate;
pub mod rotation;
pub mod secrets;
pub mod store;
pub mod validate;
