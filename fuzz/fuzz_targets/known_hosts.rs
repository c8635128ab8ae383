#![no_main]
//! Any bytes as a known_hosts file, asked about a few hosts: no panic.

use std::path::Path;

use etcdroll::ssh::known_hosts::KnownHosts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let kh = KnownHosts::parse(&text, Path::new("fuzz"));
    for (h, p) in [("host", 22), ("198.18.0.1", 2222), ("[x]", 1)] {
        let _ = kh.check(h, p, "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5");
        let _ = kh.known_algorithms(h, p);
        let _ = kh.cert_authorities(h, p);
    }
});
