//! Subject templates and the claim values interpolated into them. Input: a
//! template, NUL, a claim value given to every claim the template names. An
//! interpolated value may never add a token or a wildcard.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nats_oidc_callout::policy::SubjectTemplate;
use nats_oidc_callout::subject::validate_subject;
use nats_oidc_callout_fuzz::split;
use serde_json::{Map, Value};

fn shape(subject: &str) -> Vec<bool> {
    subject.split('.').map(|t| t == "*" || t == ">").collect()
}

fn claims(template: &SubjectTemplate, value: &str) -> Map<String, Value> {
    template
        .claims()
        .map(|name| (name.to_owned(), Value::String(value.to_owned())))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (template, value) = split(data);
    let (Ok(template), Ok(value)) = (std::str::from_utf8(template), std::str::from_utf8(value))
    else {
        return;
    };
    let Ok(template) = SubjectTemplate::parse(template) else {
        return;
    };
    let benign = template
        .render(&claims(&template, "x"), None)
        .expect("a plain token always renders");
    if let Ok(subject) = template.render(&claims(&template, value), None) {
        assert_eq!(
            shape(&subject),
            shape(&benign),
            "{value:?} changed the subject's shape"
        );
        validate_subject(&subject).expect("a rendered subject is valid");
        if template.claims().next().is_some() {
            assert!(
                !value.is_empty() && !value.contains(['.', '*', '>', ' ', '\t', '\r', '\n']),
                "{value:?} entered a subject"
            );
        }
    }
});
