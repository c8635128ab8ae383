//! Before any command touches a host: load the inventory, settle what must be
//! known before connecting (a bad binary is a usage error, no host contacted),
//! read the sudo password once, and open one SSH session per host, all at once.

use std::sync::Arc;

use super::Common;
use crate::events::{Emitter, Event, HostDiscovered};
use crate::inventory::{self, ExtraVars, LoadOptions};
use crate::ssh::Connector;
use crate::ui::Ui;
use crate::upgrade::{self, HostLink};

/// Load the inventory and open one session per host (all at once). None when the
/// inventory is unusable (already reported).
pub(super) async fn connect(common: &Common) -> Option<(Arc<Ui>, Emitter, Vec<HostLink>)> {
    connect_hosts(common, Discover::No, |_| {
        Ok::<(), std::convert::Infallible>(())
    })
    .await
    .map(|(ui, emit, links, ())| (ui, emit, links))
}

/// `connect`, then each member describes itself (`upgrade::discover_all`): for
/// the commands that work on etcd members. What was found is shown by `check`
/// and `upgrade` (`connect_with`); here only the JSON stream carries it, so
/// `status` stays a table.
pub(super) async fn connect_members(common: &Common) -> Option<(Arc<Ui>, Emitter, Vec<HostLink>)> {
    connect_hosts(common, Discover::Quietly, |_| {
        Ok::<(), std::convert::Infallible>(())
    })
    .await
    .map(|(ui, emit, links, ())| (ui, emit, links))
}

/// Whether the members describe themselves, and whether the terminal is told.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Discover {
    No,
    Quietly,
    Shown,
}

/// Loads the inventory, runs `prepare` on its hosts (a refusal there is a usage
/// error, before any host is contacted), then connects.
pub(super) async fn connect_with<T, E: std::fmt::Display>(
    common: &Common,
    prepare: impl FnOnce(&[inventory::Host]) -> Result<T, E>,
) -> Option<(Arc<Ui>, Emitter, Vec<HostLink>, T)> {
    connect_hosts(common, Discover::Shown, prepare).await
}

/// Load the inventory with `-e`, `--group` and `--limit`, its warnings on
/// stderr. None when it is unusable (already reported).
pub(super) fn load_inventory(common: &Common, ui: &Ui) -> Option<inventory::Inventory> {
    let extra_vars = match ExtraVars::parse(&common.extra_vars) {
        Ok(x) => x,
        Err(e) => {
            ui.error(&e.to_string());
            return None;
        }
    };
    let inv = match inventory::load(
        &common.inventory,
        &LoadOptions {
            group: &common.group,
            limit: common.limit.as_deref(),
            extra_vars: Some(&extra_vars),
            via_ansible: common.inventory_via_ansible,
        },
    ) {
        Ok(inv) => inv,
        Err(e) => {
            ui.error(&format!("inventory: {e}"));
            return None;
        }
    };
    for note in &inv.notes {
        eprintln!("warning: inventory: {note}");
    }
    Some(inv)
}

/// `--list-hosts`: the hosts a command would act on, as `ansible --list-hosts`
/// prints them (JSON: `{"hosts": [...]}`), and nothing connected.
pub(super) fn list_hosts(common: &Common) -> i32 {
    let ui = Ui::new(common.output);
    let Some(inv) = load_inventory(common, &ui) else {
        return crate::exit::USAGE;
    };
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    if ui.is_json() {
        println!("{}", serde_json::json!({ "hosts": names }));
    } else {
        println!("  hosts ({}):", names.len());
        for n in names {
            println!("    {n}");
        }
    }
    crate::exit::OK
}

async fn connect_hosts<T, E: std::fmt::Display>(
    common: &Common,
    discover: Discover,
    prepare: impl FnOnce(&[inventory::Host]) -> Result<T, E>,
) -> Option<(Arc<Ui>, Emitter, Vec<HostLink>, T)> {
    let ui = Ui::new(common.output);
    let inv = load_inventory(common, &ui)?;
    let prepared = match prepare(&inv.hosts) {
        Ok(p) => p,
        Err(e) => {
            ui.error(&e.to_string());
            return None;
        }
    };
    let reach = match common.reach() {
        Ok(r) => r,
        Err(e) => {
            ui.error(&e);
            return None;
        }
    };
    let emit = ui.emitter();
    let connector = Arc::new(Connector::new(common.ssh_options()));
    let mut links = upgrade::connect_all(connector, &inv.hosts, &reach).await;
    if discover != Discover::No {
        let found = upgrade::discover_all(&mut links, common.command_timeout).await;
        if !found.is_empty() && (discover == Discover::Shown || ui.is_json()) {
            emit(Event::Discovered {
                hosts: found
                    .into_iter()
                    .map(|(host, settings)| HostDiscovered { host, settings })
                    .collect(),
            });
        }
    }
    Some((ui, emit, links, prepared))
}
