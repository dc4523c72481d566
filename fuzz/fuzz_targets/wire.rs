//! Fuzz target `wire`: see [`dsops_fuzz::wire`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dsops_fuzz::wire(data));
