//! The service's configuration file. Any input is a config, or errors that
//! each name file:line:column; never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nats_oidc_callout::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::parse(Path::new("/fuzz/callout.toml"), text) {
            let text = e.to_string();
            assert!(!text.is_empty());
            // Every error names its place: file:line:column.
            for line in text.lines() {
                let place = line.strip_prefix("/fuzz/callout.toml:");
                let numbers: Vec<&str> =
                    place.map_or(vec![], |p| p.splitn(3, ':').take(2).collect());
                assert!(
                    numbers.len() == 2
                        && numbers
                            .iter()
                            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
                    "an error without a place: {line:?}"
                );
            }
        }
    }
});
