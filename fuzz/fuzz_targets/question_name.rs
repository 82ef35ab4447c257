#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetdns_dns::fuzzing::question_name(data));
