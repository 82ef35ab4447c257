#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetdns_core::fuzzing::kube_objects(data));
