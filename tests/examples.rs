//! The example inventories in inventory/ parse.

use std::path::Path;

use etcdroll::inventory::{load, LoadOptions};

#[test]
fn example_inventories_parse() {
    for (file, n) in [
        ("inventory/lab.yml", 3),
        ("inventory/kubespray.ini", 3),
        ("inventory/bastion.yml", 3),
        ("inventory/tls-kubeadm.yml", 3),
    ] {
        let inv = load(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/"))
                .join(file)
                .as_path(),
            &LoadOptions {
                group: "etcd",
                limit: None,
                extra_vars: None,
                via_ansible: false,
            },
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(inv.hosts.len(), n, "{file}");
    }
}
