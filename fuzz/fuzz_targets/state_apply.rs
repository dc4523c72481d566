//! Fuzz target `state_apply`: see [`dsops_fuzz::state_apply`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dsops_fuzz::state_apply(data));
