//! Fuzz target `receipt`: see [`dsops_fuzz::receipt`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dsops_fuzz::receipt(data));
