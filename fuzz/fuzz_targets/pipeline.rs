//! See `tokenwatch_fuzz::pipeline` in `src/lib.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenwatch_fuzz::pipeline(data));
