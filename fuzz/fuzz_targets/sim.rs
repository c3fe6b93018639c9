#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fibergun_sim::fuzz(data));
