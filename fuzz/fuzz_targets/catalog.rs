//! Fuzz target `catalog`: see [`dsops_fuzz::catalog`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dsops_fuzz::catalog(data));
