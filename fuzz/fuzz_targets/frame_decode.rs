#![no_main]
include!("../entries.rs");
libfuzzer_sys::fuzz_target!(|data: &[u8]| frame_decode(data));
