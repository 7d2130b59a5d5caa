//! Any bytes as a `nginx` record never panic (see `src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenwatch_fuzz::decode("nginx", data));
