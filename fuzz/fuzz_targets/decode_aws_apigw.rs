//! Any bytes as a `aws_apigw` record never panic (see `src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenwatch_fuzz::decode("aws_apigw", data));
