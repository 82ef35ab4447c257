//! ExternalDNS's TXT registry: which TXT record says who owns a record, and what it says
//! (XDNS-5..7).

use std::fmt::Write as _;

use crate::model::RecordType;

/// `heritage=external-dns`: a TXT value without it is not an ownership record (XDNS-5).
pub const HERITAGE: &str = "external-dns";
const OWNER_LABEL: &str = "external-dns/owner";
const RESOURCE_LABEL: &str = "external-dns/resource";
/// The template ExternalDNS substitutes in `--txt-prefix` / `--txt-suffix` (XDNS-7).
const TYPE_TEMPLATE: &str = "%{record_type}";

/// What an ownership record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub owner: String,
    /// `service/<ns>/<name>`; empty when absent.
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelsError {
    #[error("heritage is {0:?}, not external-dns")]
    Heritage(String),
    #[error("ownership record without an owner")]
    NoOwner,
}

impl Labels {
    /// The TXT value, without the quotes a zone file puts around it (XDNS-5): `heritage`
    /// first, then the labels sorted by key.
    pub fn value(&self) -> String {
        let mut v = format!("heritage={HERITAGE},{OWNER_LABEL}={}", self.owner);
        if !self.resource.is_empty() {
            let _ = write!(v, ",{RESOURCE_LABEL}={}", self.resource);
        }
        v
    }

    /// `Ok(None)`: not an ownership record (no `heritage`). Surrounding quotes are ignored, as
    /// ExternalDNS does.
    pub fn parse(value: &str) -> Result<Option<Self>, LabelsError> {
        let value = value.trim().trim_matches('"');
        let mut heritage = None;
        let mut owner = None;
        let mut resource = String::new();
        for part in value.split(',') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k.trim() {
                "heritage" => heritage = Some(v.trim()),
                OWNER_LABEL => owner = Some(v.trim().to_owned()),
                RESOURCE_LABEL => v.trim().clone_into(&mut resource),
                _ => {}
            }
        }
        match heritage {
            None => Ok(None),
            Some(h) if h != HERITAGE => Err(LabelsError::Heritage(h.to_owned())),
            Some(_) => Ok(Some(Self {
                owner: owner
                    .filter(|o| !o.is_empty())
                    .ok_or(LabelsError::NoOwner)?,
                resource,
            })),
        }
    }
}

/// Maps record names to their ownership-record names (`--txt-prefix` or `--txt-suffix`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxtNames {
    prefix: String,
    suffix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("txt_prefix and txt_suffix are mutually exclusive (XDNS-7)")]
pub struct BothAffixes;

impl TxtNames {
    pub fn new(prefix: &str, suffix: &str) -> Result<Self, BothAffixes> {
        if !prefix.is_empty() && !suffix.is_empty() {
            return Err(BothAffixes);
        }
        Ok(Self {
            prefix: prefix.to_ascii_lowercase(),
            suffix: suffix.to_ascii_lowercase(),
        })
    }

    fn type_in_affix(&self) -> bool {
        self.prefix.contains(TYPE_TEMPLATE) || self.suffix.contains(TYPE_TEMPLATE)
    }

    /// The current format (XDNS-6, XDNS-7): `<type>-` on the first label unless an affix
    /// carries `%{record_type}`; the prefix goes before the first label, the suffix after it.
    pub fn new_format(&self, name: &str, record_type: RecordType) -> String {
        let t = record_type.lower();
        let prefix = self.prefix.replace(TYPE_TEMPLATE, t);
        let suffix = self.suffix.replace(TYPE_TEMPLATE, t);
        let (first, rest) = match name.split_once('.') {
            Some((f, r)) => (f, Some(r)),
            None => (name, None),
        };
        let first = if self.type_in_affix() {
            first.to_owned()
        } else {
            format!("{t}-{first}")
        };
        match rest {
            Some(rest) => format!("{prefix}{first}{suffix}.{rest}"),
            None => format!("{prefix}{first}{suffix}"),
        }
    }

    /// The old format (before v0.12), still read as a fallback for every type but AAAA: the
    /// affixes around the first label, no type (XDNS-6).
    pub fn old_format(&self, name: &str) -> String {
        let prefix = self.prefix.replace(TYPE_TEMPLATE, "");
        let suffix = self.suffix.replace(TYPE_TEMPLATE, "");
        match name.split_once('.') {
            Some((first, rest)) => format!("{prefix}{first}{suffix}.{rest}"),
            None => format!("{prefix}{name}{suffix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdns_5_value_format_and_parsing() {
        let l = Labels {
            owner: "fleet-1".into(),
            resource: "service/default/payment".into(),
        };
        assert_eq!(
            l.value(),
            "heritage=external-dns,external-dns/owner=fleet-1,external-dns/resource=service/default/payment"
        );
        assert_eq!(
            Labels::parse(&format!("\"{}\"", l.value())),
            Ok(Some(l.clone()))
        );
        assert_eq!(Labels::parse("v=spf1 -all"), Ok(None));
        assert_eq!(
            Labels::parse("heritage=other,external-dns/owner=x"),
            Err(LabelsError::Heritage("other".into()))
        );
        assert_eq!(
            Labels::parse("heritage=external-dns"),
            Err(LabelsError::NoOwner)
        );
    }

    #[test]
    fn xdns_6_type_prefix_on_the_first_label() {
        let n = TxtNames::default();
        assert_eq!(n.new_format("www.ex.com", RecordType::A), "a-www.ex.com");
        assert_eq!(
            n.new_format("www.ex.com", RecordType::Cname),
            "cname-www.ex.com"
        );
        assert_eq!(
            n.new_format("www.ex.com", RecordType::Aaaa),
            "aaaa-www.ex.com"
        );
        assert_eq!(n.old_format("www.ex.com"), "www.ex.com");
    }

    #[test]
    fn xdns_7_prefix_suffix_and_templates() {
        let p = TxtNames::new("_owner.", "").unwrap();
        assert_eq!(
            p.new_format("foo.ex.com", RecordType::A),
            "_owner.a-foo.ex.com"
        );
        assert_eq!(p.old_format("foo.ex.com"), "_owner.foo.ex.com");
        let t = TxtNames::new("%{record_type}-abc-.", "").unwrap();
        assert_eq!(
            t.new_format("www.ex.com", RecordType::Cname),
            "cname-abc-.www.ex.com"
        );
        let s = TxtNames::new("", "-.%{record_type}").unwrap();
        assert_eq!(
            s.new_format("www.ex.com", RecordType::Cname),
            "www-.cname.ex.com"
        );
        assert_eq!(TxtNames::new("a", "b"), Err(BothAffixes));
    }
}
