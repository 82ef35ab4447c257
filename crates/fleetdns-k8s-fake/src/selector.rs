//! Label and field selectors.

use serde_json::Value;

use crate::http::{Reply, error, param};
use crate::store::meta_str;

// ---- selectors ----------------------------------------------------------------------------

/// One selector term on a label or field `key`: with a `value`, `=`/`==` (`equal`) or `!=`;
/// without, `k` (`equal`: it exists) or `!k`.
pub(crate) struct Term {
    pub(crate) field: bool,
    pub(crate) key: String,
    pub(crate) equal: bool,
    pub(crate) value: Option<String>,
}

/// What a list or watch selects: a namespace, labels (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// comma-separated) and the fields `metadata.name` and `metadata.namespace`; other field
/// selectors are accepted and ignored.
pub(crate) struct Filter {
    pub(crate) ns: Option<String>,
    pub(crate) terms: Vec<Term>,
}

impl Filter {
    pub(crate) fn new(ns: Option<String>, query: &[(String, String)]) -> Result<Filter, Reply> {
        let mut terms = Vec::new();
        for (field, param_name) in [(false, "labelSelector"), (true, "fieldSelector")] {
            for t in param(query, param_name)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
            {
                let (key, equal, value) = if t.is_empty() {
                    continue;
                } else if let Some(k) = t.strip_prefix('!') {
                    (k, false, None)
                } else if let Some((k, v)) = t.split_once("!=") {
                    (k, false, Some(v))
                } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                    (k, true, Some(v))
                } else {
                    (t, true, None)
                };
                let key = key.trim();
                if key.is_empty()
                    || key.contains([' ', '(', ')', '!', '='])
                    || (field && value.is_none())
                {
                    return Err(error(400, format!("unable to parse requirement: {t:?}")));
                }
                let value = value.map(|v| v.trim().to_owned());
                terms.push(Term {
                    field,
                    key: key.to_owned(),
                    equal,
                    value,
                });
            }
        }
        Ok(Filter { ns, terms })
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        if self
            .ns
            .as_deref()
            .is_some_and(|ns| meta_str(obj, "namespace") != Some(ns))
        {
            return false;
        }
        self.terms.iter().all(|t| {
            let actual = match (t.field, t.key.as_str()) {
                (true, "metadata.name") => meta_str(obj, "name"),
                (true, "metadata.namespace") => meta_str(obj, "namespace"),
                (true, _) => return true,
                (false, key) => obj["metadata"]["labels"].get(key).and_then(Value::as_str),
            };
            match &t.value {
                Some(v) => (actual == Some(v.as_str())) == t.equal,
                None => actual.is_some() == t.equal,
            }
        })
    }
}
