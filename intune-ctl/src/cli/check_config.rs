//! `intune-ctl check-config FILE`: the config parsed and validated, its endpoint files read and
//! the rule set built, offline; nothing is loaded or attached.

use std::path::PathBuf;

use super::{run::RunArgs, settings::Given};

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    #[arg(value_name = "FILE", default_value = crate::config::DEFAULT_CONFIG)]
    pub file: PathBuf,
}

pub fn run(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let config = crate::config::Config::read(&args.file)?;
    let base = <RunArgs as clap::FromArgMatches>::from_arg_matches(
        &<RunArgs as clap::Args>::augment_args(clap::Command::new("check"))
            .get_matches_from(["check"]),
    )?;
    let settings = base.with_config(&config, &Given(None));
    if settings.dns.learn_from_dns {
        crate::daemon::trusted_resolvers(&settings)?;
    }
    // The service's list is not fetched: the rule set from the other sources must build.
    let (sets, rules) = settings.rules.build(&[], None)?;
    let names: usize = sets.iter().map(|s| s.urls.len()).sum();
    println!(
        "{}: ok; {} interfaces, mode {:?}, {} endpoint sets ({} prefixes, {} names) before the web service{}",
        args.file.display(),
        settings.ifaces.len(),
        settings.policy.mode,
        sets.len(),
        rules.prefix_count(),
        names,
        if settings.service.no_service {
            " (off)"
        } else {
            ""
        }
    );
    for warning in settings.policy.policy().warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(())
}
