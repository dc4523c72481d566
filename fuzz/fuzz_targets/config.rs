//! Fuzz target `config`: see [`dsops_fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dsops_fuzz::config(data));
