//! The service's configuration file. Any input is an error with a place, or
//! a config; never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nats_oidc_callout::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::parse(Path::new("/fuzz/callout.toml"), text) {
            assert!(!e.to_string().is_empty());
        }
    }
});
