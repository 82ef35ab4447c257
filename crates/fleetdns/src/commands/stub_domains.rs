//! `stub-domains`: what a cluster's DNS needs to delegate the fleet's zones to fleetdns.
//!
//! Three renderings of the same delegation: CoreDNS server blocks in the shape users write
//! today (CDNS-16), a kube-dns `stubDomains` ConfigMap (CDNS-15), and the server blocks between
//! `# fleetdns:begin` and `# fleetdns:end` markers, which `--patch` inserts into a Corefile and
//! later replaces in place (like Lighthouse's marked block, LH-2). Rendering and patching are
//! pure; only [`run`] and [`patch_file`] touch the file system.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use fleetdns_core::ClusterId;

use crate::config::{Config, Source};

pub const BEGIN_MARKER: &str = "# fleetdns:begin";
pub const END_MARKER: &str = "# fleetdns:end";

/// CoreDNS `forward` takes at most 15 upstreams (CDNS-1).
const MAX_SERVERS: usize = 15;

/// Arguments of `fleetdns stub-domains`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("zones").required(true).args(["config", "zone"]))]
pub struct Args {
    /// Where fleetdns answers, as the cluster DNS reaches it (its Service's ClusterIP):
    /// IP[:PORT], `[IPv6]:PORT`; port 53 when absent. Repeat for several servers.
    #[arg(long = "server", required = true, value_name = "ADDR[:PORT]", value_parser = parse_server)]
    pub servers: Vec<SocketAddr>,
    /// Learn the zones from a fleetdns config: the clusterset zone and one zone per cluster
    /// folder of its sources.
    #[arg(long, value_name = "FILE", conflicts_with = "zone")]
    pub config: Option<PathBuf>,
    /// A zone to delegate, taken literally. Repeat for several zones.
    #[arg(long, value_name = "ZONE")]
    pub zone: Vec<String>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = Format::Corefile, conflicts_with = "patch")]
    pub format: Format,
    /// Insert the marked block into this Corefile, or replace the one already there; everything
    /// outside the markers stays as it is.
    #[arg(long, value_name = "COREFILE")]
    pub patch: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CoreDNS server blocks, one per zone.
    Corefile,
    /// A `kube-system/kube-dns` ConfigMap with `stubDomains`.
    KubeDns,
    /// The server blocks between `# fleetdns:begin` and `# fleetdns:end` (what `--patch` writes).
    Block,
}

/// What [`patch_corefile`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchAction {
    /// No markers were there: the block was appended.
    Inserted,
    /// The block between the markers was replaced by a different one.
    Replaced,
    /// The block between the markers is already the one rendered.
    Unchanged,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("line {line}: `{END_MARKER}` without a `{BEGIN_MARKER}` before it")]
    EndWithoutBegin { line: usize },
    #[error("line {second}: a second `{BEGIN_MARKER}` (the first is on line {first})")]
    TwoBegins { first: usize, second: usize },
    #[error("line {second}: a second `{END_MARKER}` (the first is on line {first})")]
    TwoEnds { first: usize, second: usize },
    #[error("line {line}: `{BEGIN_MARKER}` without a `{END_MARKER}` after it")]
    BeginWithoutEnd { line: usize },
}

/// `fleetdns stub-domains`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.servers.len() > MAX_SERVERS {
        bail!(
            "{} servers given; CoreDNS `forward` takes at most {MAX_SERVERS}",
            args.servers.len()
        );
    }
    let zones = match &args.config {
        Some(path) => zones_from_config(&Config::load(path)?)?,
        None => normalize_zones(&args.zone)?,
    };
    if let Some(path) = &args.patch {
        let action = patch_file(path, &render_block(&zones, &args.servers))?;
        let what = match action {
            PatchAction::Inserted => "fleetdns block appended",
            PatchAction::Replaced => "fleetdns block replaced",
            PatchAction::Unchanged => "fleetdns block already up to date, not rewritten",
        };
        println!("{}: {what}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let text = match args.format {
        Format::Corefile => render_corefile(&zones, &args.servers),
        Format::KubeDns => render_kube_dns(&zones, &args.servers),
        Format::Block => render_block(&zones, &args.servers),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `--server`: an IP with an optional port (53 when absent). Hostnames are refused: CoreDNS
/// resolves them once at start, and a name served by the cluster DNS itself would loop.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!(
                "`{s}` is not IP[:PORT]: give the fleetdns Service's ClusterIP, \
                 such as 10.96.0.53, 10.96.0.53:5353, fd00::53 or [fd00::53]:5353"
            )
        })
}

/// The zones fleetdns serves for this config, clusterset zone first: the cluster zones come
/// from the source folders (one per cluster id, the rule of the files source), not from the
/// manifests, so a cluster whose files do not parse yet is still delegated.
pub fn zones_from_config(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut zones = Vec::new();
    if config.zones.clusterset.enabled {
        zones.push(config.zones.clusterset.name.clone());
    }
    let mut clusters = BTreeSet::new();
    {
        for source in &config.sources {
            match source {
                Source::Files { root, .. } => clusters.extend(cluster_folders(root)?),
                // An id from the ClusterProperty is only known once the cluster is asked; only
                // configured ids get a per-cluster zone here.
                Source::Kubernetes {
                    cluster_id: Some(id),
                    ..
                } => {
                    clusters.insert(id.clone());
                }
                Source::Kubernetes { .. } => {}
            }
        }
    }
    if config.zones.cluster_zones.enabled {
        zones.extend(
            clusters
                .iter()
                .map(|c| config.zones.cluster_zone_name(c.as_str())),
        );
    }
    zones.extend(crate::mesh_zones::mesh_zones(config, &clusters)?);
    let zones =
        normalize_zones(&zones).with_context(|| format!("zones of {}", config.path.display()))?;
    if zones.is_empty() {
        bail!(
            "{}: no zones to delegate (the clusterset zone is disabled and there are no cluster folders)",
            config.path.display()
        );
    }
    Ok(zones)
}

/// The cluster ids of a files source: its sub-folders, hidden ones and invalid names skipped
/// (fleetdns serves nothing for those either).
fn cluster_folders(root: &Path) -> anyhow::Result<Vec<ClusterId>> {
    let entries = std::fs::read_dir(root)
        .with_context(|| format!("cannot read manifest folder {}", root.display()))?;
    let mut ids = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        match ClusterId::new(&name) {
            Ok(id) => ids.push(id),
            Err(e) => {
                tracing::warn!(folder = %entry.path().display(), error = %e, "folder name is not a valid cluster id, no zone for it");
            }
        }
    }
    Ok(ids)
}

/// Lower-cases, drops a trailing dot and duplicates, and checks each zone is a DNS-1123
/// subdomain (what kube-dns accepts, and safe to write into a Corefile).
pub fn normalize_zones(zones: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for zone in zones {
        let z = zone.strip_suffix('.').unwrap_or(zone).to_ascii_lowercase();
        check_zone(&z).with_context(|| format!("zone `{zone}`"))?;
        if !out.contains(&z) {
            out.push(z);
        }
    }
    Ok(out)
}

fn check_zone(zone: &str) -> anyhow::Result<()> {
    if zone.is_empty() {
        bail!("the root zone cannot be delegated to fleetdns");
    }
    if zone.len() > 253 {
        bail!("longer than 253 characters");
    }
    for label in zone.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            bail!("label `{label}` is not a DNS-1123 label (a-z, 0-9 and '-', 1 to 63 characters)");
        }
    }
    if zone == "cluster.local" {
        bail!(
            "cluster.local is the Kubernetes cluster domain; delegating it would hand every \
             in-cluster name to fleetdns"
        );
    }
    Ok(())
}

/// The comment heading the server blocks (after a first line saying what generated them):
/// why they look the way they do.
const WHY: &str = "\
# cache 30 only caps: fleetdns answers carry short TTLs (5 s by default), kept no longer.
# No force_tcp: fleetdns sets TC on a UDP answer that does not fit; the client retries over TCP.
";

/// One CoreDNS server block per zone, forwarding to fleetdns (CDNS-16 shape).
pub fn render_corefile(zones: &[String], servers: &[SocketAddr]) -> String {
    render_servers(zones, servers, "")
}

/// The server blocks between the markers, as `--patch` writes them.
pub fn render_block(zones: &[String], servers: &[SocketAddr]) -> String {
    let replaced = "# `fleetdns stub-domains --patch` replaces everything between the markers.\n";
    format!(
        "{BEGIN_MARKER}\n{}{END_MARKER}\n",
        render_servers(zones, servers, replaced)
    )
}

fn render_servers(zones: &[String], servers: &[SocketAddr], note: &str) -> String {
    let upstreams: Vec<String> = servers.iter().map(ToString::to_string).collect();
    let upstreams = upstreams.join(" ");
    let mut out = format!(
        "# Generated by `fleetdns stub-domains`: the fleet's zones, delegated to fleetdns.\n{note}{WHY}"
    );
    for zone in zones {
        let _ = write!(
            out,
            "{zone}:53 {{\n    errors\n    cache 30\n    forward . {upstreams}\n}}\n"
        );
    }
    out
}

/// A `kube-system/kube-dns` ConfigMap whose `stubDomains` send each zone to fleetdns (CDNS-15).
pub fn render_kube_dns(zones: &[String], servers: &[SocketAddr]) -> String {
    let nameservers: Vec<String> = servers
        .iter()
        .map(|s| {
            // kube-dns takes `ip` or `ip:port` (IPv6 with a port in brackets).
            let text = if s.port() == 53 {
                s.ip().to_string()
            } else {
                s.to_string()
            };
            serde_json::Value::String(text).to_string()
        })
        .collect();
    let nameservers = nameservers.join(", ");
    let entries: Vec<String> = zones
        .iter()
        .map(|z| {
            format!(
                "      {}: [{nameservers}]",
                serde_json::Value::String(z.clone())
            )
        })
        .collect();
    format!(
        "# Generated by `fleetdns stub-domains`: kube-dns delegates the fleet's zones to fleetdns.\n\
         # Applying it replaces the whole kube-dns ConfigMap: merge in any stubDomains and\n\
         # upstreamNameservers it already has. Clusters running CoreDNS ignore this ConfigMap;\n\
         # use `--format block` or `--patch` on the CoreDNS Corefile there.\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: kube-dns\n  namespace: kube-system\n\
         data:\n  stubDomains: |\n    {{\n{}\n    }}\n",
        entries.join(",\n")
    )
}

/// The begin line's start and indentation, and the end of the end line (its newline included).
struct Markers<'a> {
    start: usize,
    indent: &'a str,
    end: usize,
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.trim()
        .strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
}

fn find_markers(text: &str) -> Result<Option<Markers<'_>>, PatchError> {
    let mut begin: Option<(usize, usize, &str)> = None; // line, byte offset, indentation
    let mut end: Option<(usize, usize)> = None; // line, byte offset past the line
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let number = i + 1;
        if is_marker(line, BEGIN_MARKER) {
            if let Some((first, _, _)) = begin {
                return Err(PatchError::TwoBegins {
                    first,
                    second: number,
                });
            }
            let indent = &line[..line.len() - line.trim_start().len()];
            begin = Some((number, offset, indent));
        } else if is_marker(line, END_MARKER) {
            if let Some((first, _)) = end {
                return Err(PatchError::TwoEnds {
                    first,
                    second: number,
                });
            }
            if begin.is_none() {
                return Err(PatchError::EndWithoutBegin { line: number });
            }
            end = Some((number, offset + line.len()));
        }
        offset += line.len();
    }
    match (begin, end) {
        (None, _) => Ok(None),
        (Some((line, _, _)), None) => Err(PatchError::BeginWithoutEnd { line }),
        (Some((_, start, indent)), Some((_, end))) => Ok(Some(Markers { start, indent, end })),
    }
}

/// Puts `block` (the output of [`render_block`]) into `corefile`: in place of the marked block
/// when there is one (indented like its begin marker), else appended after a blank line.
/// Every byte outside the markers is kept; the file's line ending (LF or CRLF) is followed.
pub fn patch_corefile(corefile: &str, block: &str) -> Result<(String, PatchAction), PatchError> {
    let eol = if corefile.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let markers = find_markers(corefile)?;
    let indent = markers.as_ref().map_or("", |m| m.indent);
    let mut new_block = String::with_capacity(block.len());
    for line in block.lines() {
        if !line.is_empty() {
            new_block.push_str(indent);
            new_block.push_str(line);
        }
        new_block.push_str(eol);
    }
    match markers {
        Some(m) => {
            if corefile[m.start..m.end] == new_block {
                return Ok((corefile.to_owned(), PatchAction::Unchanged));
            }
            let mut out = String::with_capacity(corefile.len() + new_block.len());
            out.push_str(&corefile[..m.start]);
            out.push_str(&new_block);
            out.push_str(&corefile[m.end..]);
            Ok((out, PatchAction::Replaced))
        }
        None => {
            let mut out = corefile.to_owned();
            if !out.is_empty() {
                if !out.ends_with('\n') {
                    out.push_str(eol);
                }
                out.push_str(eol);
            }
            out.push_str(&new_block);
            Ok((out, PatchAction::Inserted))
        }
    }
}

/// [`patch_corefile`] on a file, written atomically (a temporary file in the same folder,
/// then a rename) and only when it changes. On any error the file is left as it was.
pub fn patch_file(path: &Path, block: &str) -> anyhow::Result<PatchAction> {
    // Through a symlink, patch the file it points at rather than replacing the link.
    let target = std::fs::canonicalize(path)
        .with_context(|| format!("cannot read Corefile {}", path.display()))?;
    let text = std::fs::read_to_string(&target)
        .with_context(|| format!("cannot read Corefile {}", path.display()))?;
    let (patched, action) = patch_corefile(&text, block).with_context(|| {
        format!(
            "{}: fleetdns markers are malformed, file left as it was",
            path.display()
        )
    })?;
    if action != PatchAction::Unchanged {
        write_atomically(&target, patched.as_bytes())
            .with_context(|| format!("cannot write Corefile {}", path.display()))?;
    }
    Ok(action)
}

fn write_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.fleetdns-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.set_permissions(std::fs::metadata(target)?.permissions())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Vec<String> {
        vec!["clusterset.local".into(), "cluster-b.local".into()]
    }

    fn server() -> Vec<SocketAddr> {
        vec!["10.96.0.53:53".parse().unwrap()]
    }

    const COREFILE: &str = "\
.:53 {
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
}
";

    #[test]
    fn server_addresses() {
        let p = |s| parse_server(s).map(|a| a.to_string());
        assert_eq!(p("10.96.0.53"), Ok("10.96.0.53:53".into()));
        assert_eq!(p("10.96.0.53:5353"), Ok("10.96.0.53:5353".into()));
        assert_eq!(p("fd00::53"), Ok("[fd00::53]:53".into()));
        assert_eq!(p("[fd00::53]"), Ok("[fd00::53]:53".into()));
        assert_eq!(p("[fd00::53]:5353"), Ok("[fd00::53]:5353".into()));
        assert!(p("fleetdns.kube-system.svc").is_err());
        assert!(p("10.96.0.53:x").is_err());
    }

    #[test]
    fn zones_are_normalized_and_checked() {
        let z =
            |v: &[&str]| normalize_zones(&v.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(
            z(&["ClusterSet.Local.", "clusterset.local", "cluster-b.local"]).unwrap(),
            ["clusterset.local", "cluster-b.local"]
        );
        for bad in [
            ".",
            "",
            "a..b",
            "-a.local",
            "a b.local",
            "x{.local",
            "cluster.local",
        ] {
            assert!(z(&[bad]).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn corefile_has_a_server_block_per_zone() {
        let text = render_corefile(&zones(), &server());
        assert!(text.starts_with("# Generated by `fleetdns stub-domains`"));
        let blocks: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| [l, "\n"])
            .collect();
        assert_eq!(
            blocks,
            "\
clusterset.local:53 {
    errors
    cache 30
    forward . 10.96.0.53:53
}
cluster-b.local:53 {
    errors
    cache 30
    forward . 10.96.0.53:53
}
"
        );
        let two: Vec<SocketAddr> = vec![
            "10.96.0.53:53".parse().unwrap(),
            "[fd00::53]:5353".parse().unwrap(),
        ];
        assert!(
            render_corefile(&zones(), &two)
                .contains("    forward . 10.96.0.53:53 [fd00::53]:5353\n")
        );
    }

    #[test]
    fn block_is_the_corefile_between_markers() {
        let block = render_block(&zones(), &server());
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines[0], BEGIN_MARKER);
        assert_eq!(*lines.last().unwrap(), END_MARKER);
        assert!(block.ends_with('\n'));
        let servers = render_corefile(&zones(), &server());
        let servers = servers.split_once("\nclusterset").unwrap().1;
        assert!(block.ends_with(&format!("{servers}{END_MARKER}\n")));
        assert!(block.contains("\n# `fleetdns stub-domains --patch` replaces everything between"));
        assert_eq!(block.matches(BEGIN_MARKER).count(), 1);
    }

    #[test]
    fn kube_dns_config_map() {
        let text = render_kube_dns(&zones(), &server());
        let yaml: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| [l, "\n"])
            .collect();
        assert_eq!(
            yaml,
            r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: kube-dns
  namespace: kube-system
data:
  stubDomains: |
    {
      "clusterset.local": ["10.96.0.53"],
      "cluster-b.local": ["10.96.0.53"]
    }
"#
        );
        // The embedded value is the JSON kube-dns reads; a port other than 53 is kept.
        let servers: Vec<SocketAddr> = vec![
            "10.96.0.53:5353".parse().unwrap(),
            "[fd00::53]:53".parse().unwrap(),
        ];
        let text = render_kube_dns(&zones(), &servers);
        let json: String = text
            .lines()
            .skip_while(|l| *l != "  stubDomains: |")
            .skip(1)
            .collect();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["cluster-b.local"],
            serde_json::json!(["10.96.0.53:5353", "fd00::53"])
        );
    }

    #[test]
    fn patch_appends_when_there_are_no_markers() {
        let block = render_block(&zones(), &server());
        let (out, action) = patch_corefile(COREFILE, &block).unwrap();
        assert_eq!(action, PatchAction::Inserted);
        assert_eq!(out, format!("{COREFILE}\n{block}"));
        // No trailing newline: one is added before the blank line.
        let bare = COREFILE.trim_end();
        let (out, _) = patch_corefile(bare, &block).unwrap();
        assert_eq!(out, format!("{bare}\n\n{block}"));
        // An empty file gets just the block.
        assert_eq!(patch_corefile("", &block).unwrap().0, block);
    }

    #[test]
    fn patch_replaces_the_marked_block_and_keeps_the_rest() {
        let before = "# top\r\n.:53 {\n    errors   \n}\n\n";
        let after = "\nextra.local:53 {\n  forward . 1.1.1.1\n}\n# tail without newline";
        let old = format!("{BEGIN_MARKER}\nold.local:53 {{\n}}\n{END_MARKER}\n");
        let file = format!("{before}{old}{after}");
        let block = render_block(&zones(), &server());
        let (out, action) = patch_corefile(&file, &block).unwrap();
        assert_eq!(action, PatchAction::Replaced);
        assert!(out.starts_with(before), "bytes before the markers kept");
        assert!(out.ends_with(after), "bytes after the markers kept");
        let middle = &out[before.len()..out.len() - after.len()];
        // CRLF in the file: the block follows it.
        assert_eq!(middle, block.replace('\n', "\r\n"));
        assert!(!out.contains("old.local"));
    }

    #[test]
    fn patch_twice_is_the_same_file() {
        let block = render_block(&zones(), &server());
        let (once, _) = patch_corefile(COREFILE, &block).unwrap();
        let (twice, action) = patch_corefile(&once, &block).unwrap();
        assert_eq!(action, PatchAction::Unchanged);
        assert_eq!(once, twice);
        // A new fleet replaces the block, and going back restores the file exactly.
        let other = render_block(&["clusterset.local".into()], &server());
        let (changed, action) = patch_corefile(&once, &other).unwrap();
        assert_eq!(action, PatchAction::Replaced);
        assert!(!changed.contains("cluster-b.local"));
        assert_eq!(patch_corefile(&changed, &block).unwrap().0, once);
    }

    #[test]
    fn patch_keeps_the_indentation_of_the_markers() {
        let file = format!(
            "data:\n  Corefile: |\n    .:53 {{\n    }}\n    {BEGIN_MARKER}\n    {END_MARKER}\n"
        );
        let block = render_block(&zones(), &server());
        let (out, _) = patch_corefile(&file, &block).unwrap();
        assert!(out.starts_with("data:\n  Corefile: |\n    .:53 {\n    }\n    # fleetdns:begin\n"));
        assert!(out.contains("\n    clusterset.local:53 {\n        errors\n"));
        assert!(out.ends_with(&format!("    {END_MARKER}\n")));
        assert_eq!(
            patch_corefile(&out, &block).unwrap().1,
            PatchAction::Unchanged
        );
    }

    #[test]
    fn malformed_markers_are_refused() {
        let block = render_block(&zones(), &server());
        let b = BEGIN_MARKER;
        let e = END_MARKER;
        let cases = [
            (
                format!("x\n{b}\ny\n"),
                PatchError::BeginWithoutEnd { line: 2 },
            ),
            (
                format!("{e}\n{b}\n{e}\n"),
                PatchError::EndWithoutBegin { line: 1 },
            ),
            (
                format!("{b}\n{b}\n{e}\n"),
                PatchError::TwoBegins {
                    first: 1,
                    second: 2,
                },
            ),
            (
                format!("{b}\n{e}\n{b}\n{e}\n"),
                PatchError::TwoBegins {
                    first: 1,
                    second: 3,
                },
            ),
            (
                format!("{b}\n{e}\n{e}\n"),
                PatchError::TwoEnds {
                    first: 2,
                    second: 3,
                },
            ),
        ];
        for (file, want) in cases {
            assert_eq!(patch_corefile(&file, &block).unwrap_err(), want, "{file:?}");
        }
        // Text that merely mentions a marker is not one.
        let mention = "# see # fleetdns:begin in the docs\n# fleetdns:beginning\n";
        assert_eq!(
            patch_corefile(mention, &block).unwrap().1,
            PatchAction::Inserted
        );
    }

    #[test]
    fn patch_file_writes_atomically_and_leaves_bad_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Corefile");
        std::fs::write(&path, COREFILE).unwrap();
        let block = render_block(&zones(), &server());
        assert_eq!(patch_file(&path, &block).unwrap(), PatchAction::Inserted);
        let once = std::fs::read(&path).unwrap();
        assert_eq!(patch_file(&path, &block).unwrap(), PatchAction::Unchanged);
        assert_eq!(std::fs::read(&path).unwrap(), once);
        // Nothing but the Corefile is left in the folder.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["Corefile"]);

        let bad = format!("{COREFILE}{BEGIN_MARKER}\n");
        std::fs::write(&path, &bad).unwrap();
        let err = patch_file(&path, &block).unwrap_err();
        assert!(
            format!("{err:#}").contains("without a `# fleetdns:end`"),
            "{err:#}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);

        assert!(patch_file(&dir.path().join("missing"), &block).is_err());
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn zones_from_the_demo_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/fleetdns.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(
            zones_from_config(&config).unwrap(),
            [
                "clusterset.local",
                "cluster-a.local",
                "cluster-b.local",
                "cluster-c.local"
            ]
        );
    }
}
