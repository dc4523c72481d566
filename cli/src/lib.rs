//! The parts of the `dsops` CLI that other crates (tests, benchmarks) reuse: the embedded
//! default ([`embedded`]), a one-node control plane and an in-process agent under `.dsops/`.

pub mod embedded;
pub mod follow;
