#![no_main]
//! Any bytes, read as a YAML inventory: an error is fine, a panic is not.

use std::path::Path;

use etcdroll::inventory::{parse_str, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_str(text, Path::new("fuzz.yml"), &LoadOptions { group: "etcd", limit: Some("m*,!x"), extra_vars: None, via_ansible: false });
    }
});
