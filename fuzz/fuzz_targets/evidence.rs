//! Fuzz target `evidence`: see [`dsops_fuzz::evidence`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dsops_fuzz::evidence(data));
