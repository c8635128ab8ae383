#![no_main]
//! Any bytes as a kept shell's output, cut anywhere: no panic, and the cuts
//! never change whether the command ended, nor then its output and status.

use etcdroll::ssh::parse_framed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let (b, e) = ("etcdroll-begin-n-1", "etcdroll-end-n-1");
    let whole = parse_framed(b, e, &[rest]);
    let step = 1 + cut as usize % 8;
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let cut = parse_framed(b, e, &chunks);
    assert_eq!(cut.2, whole.2);
    if whole.2 {
        assert_eq!(cut, whole);
    }
});
