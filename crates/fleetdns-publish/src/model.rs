//! The records the sync reads and writes, independent of any provider.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The record types the sync manages (XDNS-4: `A`, `AAAA`, `CNAME` by default) and the TXT
/// type that carries ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Txt,
}

impl RecordType {
    /// Lower-case, as in the TXT registry's `<type>-` label prefix (XDNS-6).
    pub fn lower(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::Aaaa => "aaaa",
            Self::Cname => "cname",
            Self::Txt => "txt",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Txt => "TXT",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record type {0:?} is not one fleetdns publishes (A, AAAA, CNAME)")]
pub struct UnknownRecordType(pub String);

impl FromStr for RecordType {
    type Err = UnknownRecordType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "A" => Ok(Self::A),
            "AAAA" => Ok(Self::Aaaa),
            "CNAME" => Ok(Self::Cname),
            _ => Err(UnknownRecordType(s.to_owned())),
        }
    }
}

/// One record set: a name (lower-case, no trailing dot), a type and its targets. Desired
/// endpoints name the Kubernetes object they come from (`service/<ns>/<name>`); current ones
/// carry what their TXT ownership record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub record_type: RecordType,
    /// Addresses in their canonical text form; CNAME targets without the trailing dot.
    pub targets: BTreeSet<String>,
    /// `None`: the provider's default (then `min_ttl`).
    pub ttl: Option<u32>,
    /// `service/<namespace>/<name>` (XDNS-5); empty when unknown.
    pub resource: String,
}

impl Endpoint {
    pub fn key(&self) -> (&str, RecordType) {
        (&self.name, self.record_type)
    }

    pub fn targets_text(&self) -> String {
        self.targets.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} [{}]",
            self.name,
            self.record_type,
            self.targets_text()
        )?;
        if let Some(ttl) = self.ttl {
            write!(f, " ttl {ttl}")?;
        }
        Ok(())
    }
}

/// Lower-cases a name and strips one trailing dot; `None` when it is not a valid DNS name
/// (labels of 1..=63 bytes of letters, digits, `-`, `_`, a leading `*` label; 253 bytes in all).
pub fn normalize_name(name: &str) -> Option<String> {
    let name = name.trim();
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    for (i, label) in name.split('.').enumerate() {
        let ok = !label.is_empty()
            && label.len() <= 63
            && (label == "*" && i == 0
                || label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if !ok {
            return None;
        }
    }
    Some(name)
}

/// Whether `name` is `zone` or below it (label boundary).
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|rest| rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(
            normalize_name("WWW.Example.com.").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(
            normalize_name("*.x.example").as_deref(),
            Some("*.x.example")
        );
        assert_eq!(normalize_name("a..b"), None);
        assert_eq!(normalize_name("a b.c"), None);
        assert_eq!(normalize_name(&format!("{}.c", "a".repeat(64))), None);
        assert!(in_zone("a.fleet.example.com", "fleet.example.com"));
        assert!(in_zone("fleet.example.com", "fleet.example.com"));
        assert!(!in_zone("badfleet.example.com", "fleet.example.com"));
    }
}
