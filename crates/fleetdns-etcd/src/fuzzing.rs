//! Fuzz harness body (feature `fuzzing`): a registry value as etcd could hold it, through every
//! decode function of the [`codec`](crate::codec) the reader and the VIP allocator call. The
//! cargo-fuzz target in `fuzz/` calls it, and `tests/etcd.rs` feeds every committed corpus
//! file (`fuzz/corpus/etcd_value/`) through it as an ordinary test. A panic is a finding.

use fleetdns_core::{ClusterId, ServiceKey};

use crate::codec::{
    ExportRecord, Layout, decode_addr, decode_cluster, decode_export, decode_service_entries,
    decode_vip, encode,
};

/// `data` as a value of every kind and as a key; a decoded export survives a round trip.
pub fn registry_value(data: &[u8]) {
    let cluster = ClusterId::new("east").expect("valid id");
    let key = ServiceKey::new("default", "web").expect("valid key");
    let _ = decode_cluster(data);
    let _ = decode_vip(data);
    let _ = decode_addr(data);
    let _ = decode_service_entries(data, &cluster);
    if let Ok(export) = decode_export(data, key.clone(), cluster.clone()) {
        let again = encode(&ExportRecord::from_export(&export));
        let back = decode_export(&again, key, cluster).expect("an encoded export decodes");
        assert_eq!(back, export, "an export survives encode and decode");
    }
    let _ = Layout::new("/fleetdns").parse(data);
}
