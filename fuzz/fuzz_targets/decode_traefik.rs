//! Any bytes as a `traefik` record never panic (see `src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenwatch_fuzz::decode("traefik", data));
