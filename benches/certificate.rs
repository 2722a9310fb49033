//! Per-connection cost of mTLS: reading the verified leaf out of
//! `client_tls`, matching a `certificate = {…}` condition, checking an
//! RFC 8705 binding. Certificates are made here.
//!
//! cargo bench --bench certificate

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use nats_oidc_callout::certificate::issue::{LocalCa, San, Usage};
use nats_oidc_callout::certificate::{
    check_binding, CertificateBound, CertificateCondition, ClientCertificate,
};
use nats_oidc_callout::protocol::ClientTls;
use serde_json::json;

fn stages(c: &mut Criterion) {
    let ca = LocalCa::generate("bench CA", 1).unwrap();
    let leaf = ca
        .issue(
            "orders",
            &[San::Uri("spiffe://acme.example/ns/prod/sa/orders".into())],
            Usage::Client,
        )
        .unwrap();
    // As nats-server sends it: one chain, leaf then CA.
    let tls = ClientTls {
        version: "1.3".into(),
        cipher: "TLS_AES_128_GCM_SHA256".into(),
        certs: vec![],
        verified_chains: vec![vec![
            leaf.cert_pem.clone(),
            ca.certificate().cert_pem.clone(),
        ]],
    };
    c.bench_function("certificate/from_client_tls", |b| {
        b.iter(|| ClientCertificate::from_client_tls(black_box(Some(&tls))).unwrap())
    });
    let cert = ClientCertificate::from_client_tls(Some(&tls))
        .unwrap()
        .unwrap();
    let condition =
        CertificateCondition::from_toml("san_uri = \"spiffe://acme.example/ns/prod/*\"").unwrap();
    c.bench_function("certificate/condition_matches", |b| {
        b.iter(|| condition.matches(black_box(&cert)).unwrap())
    });
    let claims = json!({"sub": "x", "cnf": {"x5t#S256": cert.x5t_s256}});
    let claims = claims.as_object().unwrap();
    c.bench_function("certificate/check_binding", |b| {
        b.iter(|| {
            check_binding(black_box(claims), Some(&cert), CertificateBound::Required).unwrap()
        })
    });
}

criterion_group!(benches, stages);
criterion_main!(benches);
