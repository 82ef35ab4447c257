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
        // Not `format!`: a key is made for every service a source translates.
        let mut joined = String::with_capacity(namespace.len() + 1 + name.len());
        joined.push_str(namespace);
        joined.push('/');
        joined.push_str(name);
        Ok(Self {
            joined: joined.into(),
        })
    }

    /// `<namespace>/<name>`.
    pub fn as_str(&self) -> &str {
        &self.joined
    }

    /// The namespace and the name.
    fn parts(&self) -> (&str, &str) {
        // Both parts are checked labels, so the one `/` is the one between them.
        let at = self.joined.bytes().position(|b| b == b'/');
        at.map_or((&*self.joined, ""), |at| {
            (&self.joined[..at], &self.joined[at + 1..])
        })
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
        // As `self.parts().cmp(&other.parts())`, in one pass and without finding the `/`s:
        // at the first byte where the keys differ, a `/` means that key's namespace ended
        // first (it is a prefix of the other's), so that key is less; any other pair of bytes
        // compares as text (both in the namespace or both in the name). Keys ordered in maps
        // of 50 000 services are compared millions of times at start.
        let (a, b) = (self.joined.as_bytes(), other.joined.as_bytes());
        match a.iter().zip(b).position(|(x, y)| x != y) {
            None => a.len().cmp(&b.len()),
            Some(at) => match (a[at], b[at]) {
                (b'/', _) => std::cmp::Ordering::Less,
                (_, b'/') => std::cmp::Ordering::Greater,
                (x, y) => x.cmp(&y),
            },
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

    #[test]
    fn service_keys_compare_as_their_parts_do() {
        // Every pair of keys built from labels that share prefixes and hold the characters
        // that sort around `/` (`-` and digits): the one-pass comparison agrees with
        // comparing (namespace, name).
        let labels = ["a", "a-b", "a0", "ab", "a-", "b", "a-b-c", "z9", "a1-b"];
        let labels: Vec<&str> = labels
            .into_iter()
            .filter(|l| check_label("label", l).is_ok())
            .collect();
        let keys: Vec<ServiceKey> = labels
            .iter()
            .flat_map(|ns| labels.iter().map(|n| ServiceKey::new(ns, n).unwrap()))
            .collect();
        for a in &keys {
            for b in &keys {
                // A fresh copy, so the shared-string shortcut does not decide.
                let b = ServiceKey::new(b.namespace(), b.name()).unwrap();
                assert_eq!(a.cmp(&b), a.parts().cmp(&b.parts()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn service_key_rejects_bad_namespace() {
        let err = ServiceKey::new("Bad_NS", "web").unwrap_err();
        assert!(err.to_string().contains("namespace"), "{err}");
    }
}
