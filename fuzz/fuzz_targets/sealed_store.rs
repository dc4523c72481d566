//! Fuzz target `sealed_store`: see [`dsops_fuzz::sealed_store`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dsops_fuzz::sealed_store(data));
