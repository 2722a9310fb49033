//! The shipped alert rules against their promtool unit tests.

use super::*;

#[test]
fn alert_rules_pass_their_promtool_unit_tests_with_a_firing_case_and_a_near_miss_each() {
    let promtool = prometheus_tool("promtool");
    run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(repo("deploy/prometheus/alerts.yml")));
    let out = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(repo("deploy/prometheus/alerts.test.yml")));
    assert!(out.contains("SUCCESS"), "{out}");

    // Each alert has a case where it fires and one where it must not
    // (`exp_alerts: []`); promtool checks them, this checks they exist.
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(repo("deploy/prometheus/alerts.test.yml")).unwrap();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let exp = lines[i..]
            .iter()
            .find(|l| l.starts_with("exp_alerts:"))
            .unwrap_or_else(|| panic!("alertname {name} without exp_alerts"));
        if exp.ends_with("[]") {
            quiet.insert(name.trim().to_owned());
        } else {
            fires.insert(name.trim().to_owned());
        }
    }
    let names = alert_names(&rules);
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        assert!(fires.contains(name), "no promtool case makes {name} fire");
        assert!(quiet.contains(name), "no promtool near miss for {name}");
    }
}
