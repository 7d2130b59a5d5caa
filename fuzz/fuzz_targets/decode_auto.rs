//! Any bytes as a `auto` record never panic (see `src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenwatch_fuzz::decode("auto", data));
