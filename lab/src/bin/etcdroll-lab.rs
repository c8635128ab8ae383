//! The lab from the command line, for the demo and for trying etcdroll by hand:
//! `etcdroll-lab up --dir DIR [--members 3] [--version 3.4.23] [--bastions 0] [--enable-v2]
//! [--systemd kubespray|debian|plain] [--link rtt=100ms,rate=20mbit]` starts real hosts
//! (network namespaces with sshd and etcd; with --systemd, a systemd-nspawn container
//! per host) and writes DIR/inventory.yml; `etcdroll-lab down --dir DIR` removes
//! everything it made. With --link the inventory points at delaying relays that
//! live in this process, so `up` stays in the foreground until interrupted.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use etcdroll_lab::{Lab, LabSpec, Layout, LinkModel};

#[derive(Parser)]
#[command(
    name = "etcdroll-lab",
    about = "Start or stop a lab of real etcd hosts in network namespaces (root only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a lab and write DIR/inventory.yml and DIR/lab.json.
    Up {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        members: usize,
        #[arg(long, default_value_t = 0)]
        plain_hosts: usize,
        #[arg(long, default_value = "3.4.23")]
        version: String,
        #[arg(long, default_value_t = 0)]
        bastions: usize,
        #[arg(long)]
        enable_v2: bool,
        /// systemd hosts (a systemd-nspawn container each) with etcd laid out as
        /// kubespray, Debian's package, or a plain unit does it.
        #[arg(long, value_name = "kubespray|debian|plain")]
        systemd: Option<Layout>,
        /// With --systemd kubespray: kubespray's second cluster etcd-events (2383/2382).
        #[arg(long)]
        etcd_events: bool,
        /// Also write DIR/hosts.yml, an inventory naming only the hosts.
        #[arg(long)]
        hosts_only: bool,
        /// A far or thin link between this machine and the hosts (`rtt=100ms`,
        /// `delay=50ms` one way, `rate=20mbit`): SSH goes through delaying relays
        /// run by this process, which then stays in the foreground (Ctrl-C stops
        /// the relays; `down` still removes the lab).
        #[arg(long, value_name = "rtt=DUR,rate=RATE")]
        link: Option<LinkModel>,
    },
    /// Tear down the lab saved in DIR/lab.json.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Up {
            dir,
            members,
            plain_hosts,
            version,
            bastions,
            enable_v2,
            systemd,
            etcd_events,
            hosts_only,
            link,
        } => up(
            dir,
            LabSpec {
                members,
                plain_hosts,
                version,
                bastions,
                enable_v2,
                systemd,
                etcd_events,
                link,
                ..LabSpec::default()
            },
            hosts_only,
        ),
        Cmd::Down { dir } => Lab::load(&dir.join("lab.json")).map(|mut lab| lab.teardown()),
    };
    if let Err(e) = res {
        eprintln!("etcdroll-lab: {e:#}");
        std::process::exit(1);
    }
}

fn up(dir: PathBuf, spec: LabSpec, hosts_only: bool) -> anyhow::Result<()> {
    if let Err(why) = Lab::available() {
        anyhow::bail!("the lab cannot run here: {why}");
    }
    std::fs::create_dir_all(&dir)?;
    let lab = Lab::start(&spec)?;
    lab.write_inventory(&dir.join("inventory.yml"))?;
    if hosts_only {
        lab.write_hosts_only_inventory(&dir.join("hosts.yml"))?;
    }
    lab.save(&dir.join("lab.json"))?;
    for h in lab
        .members
        .iter()
        .chain(&lab.plain_hosts)
        .chain(&lab.bastions)
    {
        println!("{:<10} {:<16} netns {}", h.name, h.addr, h.netns);
    }
    println!("inventory: {}", dir.join("inventory.yml").display());
    let lab = lab.persist();
    if let Some(link) = lab.link {
        for (name, at) in &lab.relayed {
            println!("relay {name:<6} {at} ({link})");
        }
        println!("relaying; Ctrl-C stops the relays (then `etcdroll-lab down --dir DIR`)");
        loop {
            std::thread::park();
        }
    }
    Ok(())
}
