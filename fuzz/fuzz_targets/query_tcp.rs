#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetdns_dns::fuzzing::query_response_tcp(data));
