//! See `tokenwatch_fuzz::config` in `src/lib.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenwatch_fuzz::config(data));
