//! `intune-ctl daemon` (alias `run`): the settings it runs with, read again on every SIGHUP.
//! The daemon itself is `crate::daemon`.

use std::sync::Arc;

use super::flags::{
    DaemonFlags, DnsFlags, PathFlags, PolicyFlags, RuleFlags, ServiceFlags, validated,
};
use crate::settings::Settings;

#[derive(Clone, Debug, clap::Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub paths: PathFlags,
    #[command(flatten)]
    pub daemon: DaemonFlags,
    #[command(flatten)]
    pub rules: RuleFlags,
    #[command(flatten)]
    pub service: ServiceFlags,
    #[command(flatten)]
    pub dns: DnsFlags,
    #[command(flatten)]
    pub policy: PolicyFlags,
}

impl DaemonArgs {
    /// The config file with every flag given over it, checked.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = self.paths.settings()?;
        self.daemon.apply(&mut s);
        self.rules.apply(&mut s);
        self.service.apply(&mut s);
        self.dns.apply(&mut s);
        self.policy.apply(&mut s);
        validated(s)
    }
}

pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let args = Arc::new(args);
    crate::daemon::run(Arc::new(move || args.settings())).await
}
