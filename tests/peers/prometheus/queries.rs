//! Reading PromQL well enough to check it: the series selectors of an
//! expression, dashboard variables filled in, panels in nested rows.

use super::*;

/// The shipped rules with every `for:` set to 0s, so an alert fires at the
/// first evaluation where its expression holds; the expressions are the
/// shipped ones, untouched. The real `for:` durations (minutes) are tested
/// by promtool against synthetic time.
pub(super) fn rules_without_for(rules: &str) -> String {
    let mut rewritten = 0;
    let copy: Vec<String> = rules
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            if line.trim_start().starts_with("for:") {
                rewritten += 1;
                format!("{indent}for: 0s")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(rewritten >= 10, "only {rewritten} `for:` lines found");
    copy.join("\n") + "\n"
}

/// The metric selectors (name plus matchers) in a PromQL expression: every
/// identifier that is not a function, keyword, label list, number, range
/// or string.
pub(super) fn selectors(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 21] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "group_left",
        "group_right",
        // Aggregations, which may be followed by `by (…)` before `(`.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Index just past the bracket matching the one at `i`, skipping strings.
    let close = |mut i: usize, open: u8, shut: u8| {
        let mut depth = 0;
        let mut quote = None;
        while i < b.len() {
            match (quote, b[i]) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), b'\\') => i += 1,
                (Some(_), _) => {}
                (None, b'"' | b'\'' | b'`') => quote = Some(b[i]),
                (None, c) if c == open => depth += 1,
                (None, c) if c == shut => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced {} in {expr}", open as char);
    };
    while i < b.len() {
        let c = b[i];
        if c == b'[' {
            i = close(i, b'[', b']');
        } else if c == b'"' || c == b'\'' || c == b'`' {
            let mut j = i + 1;
            while b[j] != c {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c.is_ascii_digit() || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let name = &expr[start..i];
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let next = b.get(j).copied();
            if LABEL_LISTS.contains(&name) && next == Some(b'(') {
                i = close(j, b'(', b')');
            } else if next == Some(b'(') || KEYWORDS.contains(&name) {
                // A function or aggregation: its arguments are scanned next.
            } else if next == Some(b'{') {
                i = close(j, b'{', b'}');
                out.push(format!("{name}{}", &expr[j..i]));
            } else {
                out.push(name.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// A panel query with the dashboard's variables filled in as Grafana would
/// for this test's deployment.
pub(super) fn substitute(expr: &str) -> String {
    let q = expr
        .replace("${job}", JOB)
        .replace("$job", JOB)
        .replace("${issuer}", "corp")
        .replace("$issuer", "corp")
        .replace("$__rate_interval", "1m");
    assert!(!q.contains('$'), "unknown variable left in {q}");
    q
}

/// Every panel (rows included) of a dashboard.
pub(super) fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack: Vec<Value> = dashboard["panels"].as_array().unwrap().clone();
    while let Some(p) = stack.pop() {
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner.iter().cloned());
        }
        out.push(p);
    }
    out
}

#[test]
fn selectors_are_found_in_prometheus_formatted_queries() {
    let q = r#"(sum by(job, reason_class) (rate(a_total{reason_class!~"x|y",result="deny"}[10m])) / on(job) group_left() sum by(job) (rate(a_total[10m]))) > 0.25 and on(job, reason_class) b >= 30"#;
    assert_eq!(
        selectors(q),
        [
            r#"a_total{reason_class!~"x|y",result="deny"}"#,
            "a_total",
            "b"
        ]
    );
    assert_eq!(selectors(r#"absent(up{job="j"} == 1)"#), [r#"up{job="j"}"#]);
    assert_eq!(
        selectors("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) >= 1.5"),
        ["h_bucket"]
    );
    assert_eq!(selectors("k > 18 * 3600"), ["k"]);
}

/// `- alert: Name` lines of a rules file, in order.
pub(super) fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}
