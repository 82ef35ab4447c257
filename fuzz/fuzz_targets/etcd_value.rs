#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetdns_etcd::fuzzing::registry_value(data));
