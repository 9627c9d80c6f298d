#![no_main]
include!("../entries_recv.rs");
libfuzzer_sys::fuzz_target!(|data: &[u8]| handle_datagram(data));
