//! `[[forward]] upstreams` entries naming a resolv.conf: the binary reads the file (libraries
//! never read files) and replaces the path by the `nameserver` addresses in it.

use anyhow::{Context, bail};
use fleetdns_dns::forward::config::{
    ForwardZoneConfig, is_resolv_conf_path, resolv_conf_nameservers,
};

/// How the config reads the resolv.conf files it names: from disk, or (the fuzz harness,
/// which touches no file) from memory.
pub type ReadFile<'a> = &'a dyn Fn(&str) -> std::io::Result<String>;

/// The [`ReadFile`] of every caller but the fuzz harness.
pub fn read_from_disk(path: &str) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// Replaces every resolv.conf path in `forward`'s upstreams by the addresses it names, the
/// files read by `read`.
pub fn expand_upstream_files_with(
    forward: &mut [ForwardZoneConfig],
    read: ReadFile<'_>,
) -> anyhow::Result<()> {
    for zone in forward {
        let mut upstreams = Vec::with_capacity(zone.upstreams.len());
        for value in &zone.upstreams {
            if !is_resolv_conf_path(value) {
                upstreams.push(value.clone());
                continue;
            }
            let text = read(value).with_context(|| {
                format!(
                    "forward zone {:?}: upstream {value:?} is not an address or a readable resolv.conf",
                    zone.zone
                )
            })?;
            let found = resolv_conf_nameservers(&text);
            if found.is_empty() {
                bail!(
                    "forward zone {:?}: upstream {value:?} is not an address or a readable resolv.conf: no nameserver lines",
                    zone.zone
                );
            }
            upstreams.extend(found.iter().map(ToString::to_string));
        }
        zone.upstreams = upstreams;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_paths_become_their_nameservers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "search x\nnameserver 10.0.0.1\nnameserver ::1\n").unwrap();
        let mut zones: Vec<ForwardZoneConfig> = vec![
            toml::from_str(&format!(
                "zone = \"z\"\nupstreams = [\"127.0.0.1:5300\", \"10.1.1.1\", {:?}]",
                path.display().to_string()
            ))
            .unwrap(),
        ];
        expand_upstream_files_with(&mut zones, &read_from_disk).unwrap();
        let got = fleetdns_dns::forward::parse_upstreams("z", &zones[0].upstreams).unwrap();
        let want: Vec<std::net::SocketAddr> =
            ["127.0.0.1:5300", "10.1.1.1:53", "10.0.0.1:53", "[::1]:53"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
        assert_eq!(got, want);
        let empty = dir.path().join("empty.conf");
        std::fs::write(&empty, "search x\n").unwrap();
        for bad in [empty, dir.path().join("missing.conf")] {
            let mut zones = vec![ForwardZoneConfig {
                upstreams: vec![bad.display().to_string()],
                ..zones[0].clone()
            }];
            let err = format!(
                "{:#}",
                expand_upstream_files_with(&mut zones, &read_from_disk).unwrap_err()
            );
            assert!(err.contains(&bad.display().to_string()), "{err}");
        }
    }
}
