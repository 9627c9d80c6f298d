#![no_main]
include!("../codec_entries.rs");
libfuzzer_sys::fuzz_target!(|data: &[u8]| key_file(data));
