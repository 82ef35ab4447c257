//! Validated names: cluster ids and service keys. Parse at the edge, then trust the type.

use std::fmt;
use std::sync::Arc;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} is longer than 63 characters")]
    TooLong { what: &'static str, value: String },
    #[error(
        "{what} {value:?} is not an RFC 1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit)"
    )]
    NotLabel { what: &'static str, value: String },
}

/// Checks an RFC 1123 DNS label: 1..=63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn check_label(what: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { what });
    }
    if value.len() > 63 {
        return Err(IdError::TooLong {
            what,
            value: value.to_owned(),
        });
    }
    let bytes = value.as_bytes();
    let ok_inner = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !ok_inner || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(IdError::NotLabel {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// A cluster id: an RFC 1123 label, unique in the fleet (MCS-6, LH-3). Every export names
/// its cluster, so clones share one string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(Arc<str>);

impl ClusterId {
    pub fn new(value: &str) -> Result<Self, IdError> {
        check_label("cluster id", value)?;
        Ok(Self(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ClusterId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// `<namespace>/<name>` of a service; both parts are RFC 1123 labels (namespace sameness, MCS-25).
/// One shared string, so the many maps keyed by service clone keys without copying them, and
/// nothing beside it (a key is in every export and in several maps of every service): the
/// parts are found at the `/`, which no label holds. Ordered by namespace, then name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// `<namespace>/<name>`.
    joined: Arc<str>,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> Result<Self, IdError> {
        check_label("namespace", namespace)?;
        check_label("service name", name)?;
        Ok(Self {
            joined: format!("{namespace}/{name}").into(),
        })
    }

    /// The namespace and the name.
    fn parts(&self) -> (&str, &str) {
        // Both parts are checked labels, so the one `/` is the one between them. Found as a
        // byte: `split_once` searched for the char through a general searcher, which cost
        // more than the rest of naming a service in the compiler.
        let at = self.joined.bytes().position(|b| b == b'/');
        match at {
            Some(at) => (&self.joined[..at], &self.joined[at + 1..]),
            None => (&self.joined, ""),
        }
    }

    pub fn namespace(&self) -> &str {
        self.parts().0
    }

    pub fn name(&self) -> &str {
        self.parts().1
    }
}

impl Ord for ServiceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Maps of one fleet share their keys' strings: the same string is the same key, which
        // makes walking two versions of a 50 000-service map side by side cheap.
        if Arc::ptr_eq(&self.joined, &other.joined) {
            return std::cmp::Ordering::Equal;
        }
        // (namespace, name) without splitting either key (merges and maps of a whole fleet
        // compare keys millions of times): both parts are checked labels, whose bytes all sort
        // after `/`, so the joined bytes with `/` taken as the lowest byte sort as the pairs.
        let (a, b) = (self.joined.as_bytes(), other.joined.as_bytes());
        let rank = |byte: u8| if byte == b'/' { 0 } else { byte };
        match a.iter().zip(b).position(|(x, y)| x != y) {
            Some(i) => rank(a[i]).cmp(&rank(b[i])),
            None => a.len().cmp(&b.len()),
        }
    }
}

impl PartialOrd for ServiceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_follow_rfc1123_labels() {
        // MCS-6 / LH-3: a cluster id must be a DNS label.
        for good in ["a", "cluster-1", "c0", &"x".repeat(63)] {
            assert!(ClusterId::new(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "Cluster", "a.b", "a_b", &"x".repeat(64)] {
            assert!(ClusterId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_keys_order_by_namespace_then_name() {
        let k = |ns, n| ServiceKey::new(ns, n).unwrap();
        // "a/z" sorts after "a-b/c" as text; by namespace first it sorts before.
        assert!(k("a", "z") < k("a-b", "c"));
        assert!(k("a", "b") < k("a", "c"));
        let key = k("prod", "web");
        assert_eq!((key.namespace(), key.name()), ("prod", "web"));
        assert_eq!(key.to_string(), "prod/web");
    }

    /// The order compares the joined bytes; it must stay the order of the pairs.
    #[test]
    fn service_keys_order_as_their_parts() {
        let parts = ["a", "a-b", "a0", "ab", "b", "z", "a-", "0", "9z"];
        let keys: Vec<ServiceKey> = parts
            .iter()
            .flat_map(|ns| {
                parts
                    .iter()
                    .filter_map(move |n| ServiceKey::new(ns, n).ok())
            })
            .collect();
        for a in &keys {
            for b in &keys {
                assert_eq!(a.cmp(b), a.parts().cmp(&b.parts()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn service_key_rejects_bad_namespace() {
        let err = ServiceKey::new("Bad_NS", "web").unwrap_err();
        assert!(err.to_string().contains("namespace"), "{err}");
    }
}
