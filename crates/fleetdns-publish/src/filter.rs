//! Domain filters as ExternalDNS applies them (XDNS-10), to desired and current records alike.

use regex::Regex;

/// `domain_filter`, `exclude_domains`, `regex_domain_filter` and `regex_domain_exclusion`.
#[derive(Debug, Clone, Default)]
pub struct DomainFilter {
    include: Vec<String>,
    exclude: Vec<String>,
    regex: Option<Regex>,
    regex_exclusion: Option<Regex>,
}

#[derive(Debug, thiserror::Error)]
#[error("{key}: {source}")]
pub struct FilterError {
    pub key: &'static str,
    #[source]
    pub source: regex::Error,
}

fn normalise(f: &str) -> String {
    let f = f.trim().to_ascii_lowercase();
    f.strip_suffix('.').map(str::to_owned).unwrap_or(f)
}

impl DomainFilter {
    pub fn new(
        include: &[String],
        exclude: &[String],
        regex: Option<&str>,
        regex_exclusion: Option<&str>,
    ) -> Result<Self, FilterError> {
        let compile = |key, r: Option<&str>| {
            r.filter(|r| !r.is_empty())
                .map(Regex::new)
                .transpose()
                .map_err(|source| FilterError { key, source })
        };
        Ok(Self {
            include: include
                .iter()
                .map(|f| normalise(f))
                .filter(|f| !f.is_empty())
                .collect(),
            exclude: exclude
                .iter()
                .map(|f| normalise(f))
                .filter(|f| !f.is_empty())
                .collect(),
            regex: compile("regex_domain_filter", regex)?,
            regex_exclusion: compile("regex_domain_exclusion", regex_exclusion)?,
        })
    }

    /// XDNS-10: the regex filters, when set, override the plain ones (exclusion checked
    /// first); `ex.com` matches `ex.com` and names ending `.ex.com`; `.ex.com` only names below
    /// it; an empty include list matches everything.
    pub fn matches(&self, name: &str) -> bool {
        let name = normalise(name);
        if self.regex.is_some() || self.regex_exclusion.is_some() {
            if self
                .regex_exclusion
                .as_ref()
                .is_some_and(|r| r.is_match(&name))
            {
                return false;
            }
            return self.regex.as_ref().is_none_or(|r| r.is_match(&name));
        }
        let hit = |f: &String| {
            if f.starts_with('.') {
                name.ends_with(f.as_str())
            } else {
                name == *f || name.ends_with(&format!(".{f}"))
            }
        };
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(inc: &[&str], exc: &[&str]) -> DomainFilter {
        let v = |s: &[&str]| s.iter().map(ToString::to_string).collect::<Vec<_>>();
        DomainFilter::new(&v(inc), &v(exc), None, None).unwrap()
    }

    #[test]
    fn xdns_10_label_boundaries_subdomains_only_and_exclusions() {
        let d = f(&["ex.com."], &[]);
        assert!(d.matches("ex.com"));
        assert!(d.matches("a.b.ex.com."));
        assert!(!d.matches("badex.com"));
        let sub = f(&[".ex.com"], &[]);
        assert!(!sub.matches("ex.com"));
        assert!(sub.matches("www.ex.com"));
        let ex = f(&["ex.com"], &["internal.ex.com"]);
        assert!(ex.matches("www.ex.com"));
        assert!(!ex.matches("internal.ex.com"));
        assert!(!ex.matches("db.internal.ex.com"));
        assert!(f(&[], &[]).matches("anything.org"));
    }

    #[test]
    fn xdns_10_regex_filters_override_the_plain_ones() {
        let d = DomainFilter::new(
            &["other.org".to_string()],
            &[],
            Some(r"^[a-z]+\.ex\.com$"),
            Some(r"^secret\."),
        )
        .unwrap();
        assert!(d.matches("www.ex.com"));
        assert!(!d.matches("a.b.ex.com"));
        assert!(!d.matches("secret.ex.com"), "exclusion is checked first");
        assert!(!d.matches("x.other.org"), "the plain filter is overridden");
        let err = DomainFilter::new(&[], &[], Some("("), None).unwrap_err();
        assert_eq!(err.key, "regex_domain_filter");
    }
}
