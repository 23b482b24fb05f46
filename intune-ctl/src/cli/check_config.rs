//! `intune-ctl check-config FILE`: the config parsed and validated, its endpoint files read and
//! the rule set built, offline; nothing is loaded or attached.

use std::path::PathBuf;

use crate::{
    ruleset::{build::RuleBuilder, policy::Policy},
    settings::{DEFAULT_CONFIG, Settings},
};

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    #[arg(value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub file: PathBuf,
}

pub fn run(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let settings = Settings::read(&args.file)?;
    if settings.dns.learn_from_dns {
        settings.trusted_resolvers().map_err(anyhow::Error::msg)?;
    }
    // The service's list is not fetched: the rule set from the other sources must build.
    let (sets, rules) = RuleBuilder::new(&settings)?.build(&[], &[], None)?;
    let names: usize = sets.iter().map(|s| s.urls.len()).sum();
    println!(
        "{}: ok; {} interfaces, mode {:?}, {} endpoint sets ({} prefixes, {} names) before the web service{}",
        args.file.display(),
        settings.interfaces.len(),
        settings.policy.mode,
        sets.len(),
        rules.prefix_count(),
        names,
        if settings.sources.service {
            ""
        } else {
            " (off)"
        }
    );
    for warning in Policy::of(&settings.policy).warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(())
}
