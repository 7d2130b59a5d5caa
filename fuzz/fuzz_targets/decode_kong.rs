//! Any bytes as a `kong` record never panic (see `src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenwatch_fuzz::decode("kong", data));
