#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fibergun::fuzzing::parse_frame(data));
