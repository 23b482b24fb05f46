//! `intune-ctl changes`: the last applied changes of the rule set, from the state directory.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use crate::{daemon::state::StateDir, ruleset::changes::describe};

#[derive(Debug, clap::Args)]
pub struct ChangesArgs {
    #[command(flatten)]
    pub paths: super::flags::PathFlags,
    /// How many of the newest changes to show.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub last: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ChangesArgs) -> anyhow::Result<()> {
    let settings = args.paths.settings()?;
    let all = StateDir::open(&settings.paths.state_dir)?.changes()?;
    let shown = &all[all.len().saturating_sub(args.last)..];
    if args.json {
        println!("{}", serde_json::to_string_pretty(shown)?);
        return Ok(());
    }
    if shown.is_empty() {
        println!(
            "no changes recorded in {}",
            settings.paths.state_dir.display()
        );
        return Ok(());
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(["when", "cause", "change"]);
    for c in shown {
        table.add_row([c.at.clone(), c.cause.clone(), describe(c)]);
    }
    println!("{table}");
    Ok(())
}
