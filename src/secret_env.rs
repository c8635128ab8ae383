//! Secrets handed to etcdroll in its environment (`ETCDROLL_BECOME_PASS`,
//! `ETCDROLL_KEY_PASSPHRASE`). They are taken out of the environment at start-up,
//! while the process still has one thread, so no local child (`ssh -G`, the new
//! binary's `--version`) ever inherits them; the rest of etcdroll reads them here.

use std::collections::HashMap;
use std::sync::OnceLock;

pub const BECOME_PASS: &str = "ETCDROLL_BECOME_PASS";
pub const KEY_PASSPHRASE: &str = "ETCDROLL_KEY_PASSPHRASE";

static TAKEN: OnceLock<HashMap<&'static str, zeroize::Zeroizing<String>>> = OnceLock::new();

/// Move the secrets out of the environment. Call first thing in `main`, before any
/// thread exists (changing the environment is only sound then).
pub fn take_from_environment() {
    let mut taken = HashMap::new();
    for name in [BECOME_PASS, KEY_PASSPHRASE] {
        if let Some(v) = std::env::var_os(name) {
            taken.insert(
                name,
                zeroize::Zeroizing::new(v.to_string_lossy().into_owned()),
            );
            std::env::remove_var(name);
        }
    }
    let _ = TAKEN.set(taken);
}

/// A secret given in the environment. Where `take_from_environment` never ran (the
/// library used by tests), the environment itself is read.
pub fn get(name: &str) -> Option<String> {
    match TAKEN.get() {
        Some(taken) => taken.get(name).map(|v| v.to_string()),
        None => std::env::var(name).ok(),
    }
}
