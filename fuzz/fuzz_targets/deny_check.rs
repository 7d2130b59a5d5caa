//! See `tokenwatch_fuzz::deny_check` in `src/lib.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenwatch_fuzz::deny_check(data));
