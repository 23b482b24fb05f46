//! `intune-ctl detach [--iface IF]`: the explicit way to remove the filter. Unpins the XDP
//! links (no process holds them, so the program leaves the interfaces) and, once no interface
//! is left, the program and the counter maps too. On kernels before 6.6 the DNS capture is a tc
//! filter that a killed daemon may have left behind: it goes too.

use anyhow::{Context as _, bail};

use crate::datapath::{learning::remove_left_capture, pins::Pins};

#[derive(Debug, clap::Args)]
pub struct DetachArgs {
    /// Interface to detach from (repeatable; default: every one).
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    #[command(flatten)]
    pub paths: super::flags::PathFlags,
}

pub fn run(args: &DetachArgs) -> anyhow::Result<()> {
    let settings = args.paths.settings()?;
    let pins = Pins::new(&settings.paths.bpffs_dir);
    let linked = pins.linked_ifaces();
    let targets = if args.ifaces.is_empty() {
        linked.clone()
    } else {
        args.ifaces.clone()
    };
    if let Some(missing) = targets.iter().find(|i| !linked.contains(i)) {
        bail!(
            "no filter is pinned for {missing} under {}",
            pins.dir().display()
        );
    }
    for iface in &targets {
        pins.remove_link(iface)
            .with_context(|| format!("unpinning the link of {iface}"))?;
        if remove_left_capture(iface) {
            println!("removed the DNS capture's tc filter from {iface}");
        }
        println!("detached from {iface}");
    }
    if pins.linked_ifaces().is_empty() {
        pins.remove_all()
            .with_context(|| format!("removing the pins under {}", pins.dir().display()))?;
        println!("removed the pins under {}", pins.dir().display());
    }
    Ok(())
}
