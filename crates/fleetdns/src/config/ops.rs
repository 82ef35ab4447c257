//! `[ops]`: the operations HTTP listener and the debug API.

use std::net::SocketAddr;

use serde::Deserialize;

/// The operations HTTP listener (`/health`, `/ready`, `/metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Absent: no listener.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The read-only debug API (`/debug/fleet`, `/debug/query`) and the status page at `/`.
    #[serde(default = "debug_on")]
    pub debug: bool,
}

fn debug_on() -> bool {
    true
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            debug: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::super::testing::{MINIMAL, parse};

    #[test]
    fn ops_listen_is_optional() {
        let c = parse(&format!("{MINIMAL}\n[ops]\nlisten = \"127.0.0.1:9153\"")).unwrap();
        assert_eq!(c.ops.listen, Some(SocketAddr::from(([127, 0, 0, 1], 9153))));
        assert_eq!(
            parse(&format!("{MINIMAL}\n[ops]")).unwrap().ops.listen,
            None
        );
        let err = format!(
            "{:#}",
            parse(&format!("{MINIMAL}\n[ops]\nlisten = \"nowhere\"")).unwrap_err()
        );
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn the_debug_api_is_on_unless_turned_off_and_nsid_is_optional() {
        assert!(parse(MINIMAL).unwrap().ops.debug);
        assert!(parse(&format!("{MINIMAL}\n[ops]")).unwrap().ops.debug);
        assert!(
            !parse(&format!("{MINIMAL}\n[ops]\ndebug = false"))
                .unwrap()
                .ops
                .debug
        );
        assert_eq!(parse(MINIMAL).unwrap().dns.nsid, None);
        let text = MINIMAL.replace("[dns]\n", "[dns]\nnsid = \"dns-1\"\n");
        assert_eq!(parse(&text).unwrap().dns.nsid.as_deref(), Some("dns-1"));
    }
}
