#![no_main]
include!("../hostile_entries.rs");
libfuzzer_sys::fuzz_target!(|data: &[u8]| path_policy(data));
