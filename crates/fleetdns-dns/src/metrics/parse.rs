//! A strict parser of the exposition, for tests and tools (feature `testing`): what Prometheus
//! would refuse, it refuses.

/// One sample of a parsed exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Finds the value of the sample `name` with exactly `labels`.
pub fn sample_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Parses a fleetdns exposition strictly, for tests and tools: every line is `# HELP`,
/// `# TYPE` or a sample `name{labels} value`; every sample belongs to a metric declared before
/// it with HELP then TYPE, each declared once, named `fleetdns_*`; counters end in `_total`;
/// histogram buckets are cumulative, end in `+Inf` and that bucket equals `_count`. The error
/// names the offending line or metric.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    use std::collections::{BTreeMap, BTreeSet};
    ensure!(
        text.ends_with('\n'),
        "the exposition does not end with a newline"
    );
    let mut help = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let Some((name, text)) = rest.split_once(' ') else {
                return Err(format!("HELP without text: {line}"));
            };
            ensure!(!text.is_empty(), "empty HELP: {line}");
            ensure!(valid_name(name), "bad name: {line}");
            ensure!(help.insert(name.to_owned()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                return Err(format!("TYPE without a type: {line}"));
            };
            ensure!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unknown type: {line}"
            );
            ensure!(help.contains(name), "TYPE before HELP: {line}");
            ensure!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        ensure!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line: {line:?}"
        );
        let sample = parse_sample(line)?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                let base = sample.name.strip_suffix(s)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(&sample.name);
        let Some(kind) = types.get(family) else {
            return Err(format!("sample without HELP and TYPE: {line}"));
        };
        ensure!(
            sample.value.is_finite() && sample.value >= 0.0,
            "negative or infinite value: {line}"
        );
        ensure!(
            kind != "counter" || sample.name.ends_with("_total"),
            "counter not named *_total: {line}"
        );
        ensure!(
            !samples
                .iter()
                .any(|s: &Sample| s.name == sample.name && s.labels == sample.labels),
            "series twice: {line}"
        );
        samples.push(sample);
    }
    for (name, kind) in &types {
        ensure!(name.starts_with("fleetdns_"), "{name} is not fleetdns_*");
        ensure!(
            samples.iter().any(|s| s.name.starts_with(name.as_str())),
            "{name} has no samples"
        );
        if kind == "histogram" {
            check_histogram(name, &samples)?;
        }
    }
    Ok(samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let bad = || format!("bad sample: {line}");
    let (series, value) = line.rsplit_once(' ').ok_or_else(bad)?;
    let value: f64 = value.parse().map_err(|_| bad())?;
    let (name, labels) = match series.split_once('{') {
        None => (series, std::collections::BTreeMap::new()),
        Some((name, rest)) => {
            let mut rest = rest.strip_suffix('}').ok_or_else(bad)?;
            let mut labels = std::collections::BTreeMap::new();
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"").ok_or_else(bad)?;
                ensure!(
                    valid_name(key) && !key.starts_with("__"),
                    "bad label: {line}"
                );
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().ok_or_else(bad)? {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().ok_or_else(bad)?.1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            _ => return Err(bad()),
                        },
                        (_, c) => value.push(c),
                    }
                };
                ensure!(
                    labels.insert(key.to_owned(), value).is_none(),
                    "label twice: {line}"
                );
                rest = &after[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else {
                    ensure!(rest.is_empty(), "labels not separated by commas: {line}");
                }
            }
            (name, labels)
        }
    };
    ensure!(valid_name(name), "bad name: {line}");
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn check_histogram(name: &str, samples: &[Sample]) -> Result<(), String> {
    let bucket = format!("{name}_bucket");
    let mut last_le = f64::NEG_INFINITY;
    let mut last_count = 0.0;
    let mut buckets = 0;
    for b in samples.iter().filter(|s| s.name == bucket) {
        let le = match b.labels.get("le").map(String::as_str) {
            Some("+Inf") => f64::INFINITY,
            Some(s) => s
                .parse()
                .map_err(|_| format!("{name}: le {s:?} is not a number"))?,
            None => return Err(format!("{name}: a bucket without le")),
        };
        if le.is_nan() || le <= last_le {
            return Err(format!("{name}: le not increasing at {le}"));
        }
        if b.value < last_count {
            return Err(format!("{name}: buckets not cumulative at {le}"));
        }
        (last_le, last_count) = (le, b.value);
        buckets += 1;
    }
    ensure!(buckets >= 2, "{name}: fewer than two buckets");
    ensure!(
        last_le == f64::INFINITY,
        "{name}: the last bucket is not +Inf"
    );
    let count = sample_value(samples, &format!("{name}_count"), &[])
        .ok_or_else(|| format!("{name}: no _count"))?;
    ensure!(
        count == last_count,
        "{name}: +Inf bucket {last_count} != _count {count}"
    );
    ensure!(
        sample_value(samples, &format!("{name}_sum"), &[]).is_some(),
        "{name}: no _sum"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Exposition;

    fn parse(text: &str) -> Vec<Sample> {
        parse_exposition(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn the_parser_refuses_what_prometheus_would() {
        let ok =
            "# HELP fleetdns_x_total X.\n# TYPE fleetdns_x_total counter\nfleetdns_x_total 1\n";
        parse(ok);
        let hist = |b1: &str, inf: &str, count: &str| {
            format!(
                "# HELP fleetdns_h_seconds H.\n# TYPE fleetdns_h_seconds histogram\n\
                 fleetdns_h_seconds_bucket{{le=\"0.1\"}} {b1}\n\
                 fleetdns_h_seconds_bucket{{le=\"+Inf\"}} {inf}\n\
                 fleetdns_h_seconds_sum 0.5\nfleetdns_h_seconds_count {count}\n"
            )
        };
        parse(&hist("1", "2", "2"));
        for bad in [
            ok.trim_end().to_owned(),
            ok.replace("# HELP fleetdns_x_total X.\n", ""),
            ok.replace("# TYPE fleetdns_x_total counter\n", ""),
            ok.replace("fleetdns_x_total 1", "fleetdns_x_total{a=\"1\" b=\"2\"} 1"),
            ok.replace("fleetdns_x_total 1", "fleetdns_x_total{a=\"1} 1"),
            ok.replace("fleetdns_x_total 1", "fleetdns_x_total one"),
            ok.replace("fleetdns_x_total 1", "fleetdns_y_total 1"),
            ok.replace("fleetdns_x", "other_x"),
            ok.replace("_total", ""),
            format!("{ok}fleetdns_x_total 2\n"),
            hist("3", "2", "2"),
            hist("1", "2", "3"),
        ] {
            assert!(parse_exposition(&bad).is_err(), "accepted:\n{bad}");
        }
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut text = String::new();
        let mut e = Exposition::new(&mut text);
        e.header("fleetdns_build_info", "gauge", "Build.\nSecond line \\.");
        e.sample("fleetdns_build_info", &[("version", "a\"b\\c\nd")], 1);
        let samples = parse(&text);
        assert_eq!(samples[0].labels["version"], "a\"b\\c\nd");
        assert_eq!(text.lines().count(), 3);
    }
}
