//! `intune-ctl endpoints`: the parsed, validated endpoint sets of one source, or the effective
//! list; `--ips` and `--urls` print what the article's two PowerShell one-liners print.

use std::collections::BTreeSet;

use anyhow::bail;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use super::flags::{PathFlags, RuleFlags, ServiceFlags, validated};
use crate::{
    daemon::state::StateDir,
    ruleset::build::RuleBuilder,
    settings::Settings,
    sources::{
        endpoints::{
            EndpointSet,
            builtin::builtin,
            service::{ServiceClient, ServiceConfig},
        },
        refresh::Refresher,
        tags_file,
    },
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceChoice {
    Builtin,
    /// Fetch once from the web service (version, then endpoints).
    Service,
    /// The files given with --endpoints.
    File,
    /// The Azure service tags `[sources] service_tags` names, from its file (the tags the
    /// daemon took last, when the file is rejected) or downloaded once from its url.
    ServiceTags,
    /// Built-in list, the service's last accepted list (the cache; no request), files, less exclusions.
    #[default]
    Effective,
}

#[derive(Debug, clap::Args)]
pub struct EndpointsArgs {
    #[arg(long, value_enum, default_value_t)]
    pub source: SourceChoice,
    #[command(flatten)]
    pub paths: PathFlags,
    #[command(flatten)]
    pub rules: RuleFlags,
    #[command(flatten)]
    pub service: ServiceFlags,
    /// The unique prefixes, one a line.
    #[arg(long, conflicts_with = "urls")]
    pub ips: bool,
    /// The unique names, one a line.
    #[arg(long)]
    pub urls: bool,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: &EndpointsArgs) -> anyhow::Result<()> {
    let mut settings = args.paths.settings()?;
    args.rules.apply(&mut settings);
    args.service.apply(&mut settings);
    let settings = validated(settings)?;
    let sets = match args.source {
        SourceChoice::Builtin => builtin()?,
        SourceChoice::File => {
            if settings.sources.files.is_empty() {
                bail!("--source file needs --endpoints FILE (or sources.files)");
            }
            RuleBuilder::new(&settings)?.files().to_vec()
        }
        SourceChoice::Service => fetch(&settings).await?,
        SourceChoice::ServiceTags => {
            let Some(tags) = &settings.sources.service_tags else {
                bail!(
                    "--source service-tags needs [sources] service_tags = {{ file = ..., tags = [...] }} in the config"
                );
            };
            let s = &settings.sources;
            if let Some(poller) = tags_file::TagsPoller::of(s, &settings.paths.state_dir)? {
                // From a URL: downloaded once, the daemon's record left alone.
                poller.fetch().await?
            } else {
                let loaded = tags_file::load(tags, s.max_shrink, &settings.paths.state_dir, false)?;
                if let Some(why) = &loaded.rejected {
                    eprintln!("intune-ctl: {why}");
                }
                loaded.sets
            }
        }
        SourceChoice::Effective => {
            let cached = Refresher::cached_sets(&settings.sources, &settings.paths.state_dir);
            RuleBuilder::new(&settings)?.effective(&cached)
        }
    };
    print(&sets, args)
}

/// One version check and one list, without touching the cache.
async fn fetch(settings: &Settings) -> anyhow::Result<Vec<EndpointSet>> {
    let cfg = ServiceConfig::of(&settings.sources);
    // The installation's id when the state directory is ours; a one-off id otherwise.
    let id = StateDir::open(&settings.paths.state_dir)
        .and_then(|s| s.client_request_id())
        .unwrap_or_else(|_| uuid::Uuid::new_v4());
    let client = ServiceClient::new(cfg, id)?;
    let version = client.version().await?;
    let list = client.endpoints().await?;
    // The same checks the daemon makes before it takes a list (no list in force to compare).
    crate::sources::refresh::validate(&list.sets, None, 1.0).map_err(|reason| {
        anyhow::anyhow!("the service's version {version} is rejected: {reason}")
    })?;
    tracing::info!(%version, sets = list.sets.len(), "fetched the endpoint list");
    Ok(list.sets)
}

fn print(sets: &[EndpointSet], args: &EndpointsArgs) -> anyhow::Result<()> {
    if args.ips || args.urls {
        let unique: BTreeSet<String> = if args.ips {
            sets.iter()
                .flat_map(|s| s.ips.iter().map(std::string::ToString::to_string))
                .collect()
        } else {
            sets.iter().flat_map(|s| s.urls.iter().cloned()).collect()
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&unique)?);
        } else {
            for line in unique {
                println!("{line}");
            }
        }
        return Ok(());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(sets)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "id", "area", "category", "required", "source", "ports", "names", "prefixes", "notes",
    ]);
    for s in sets {
        let mut notes = s.notes.clone();
        if notes.chars().count() > 60 {
            notes = notes.chars().take(57).collect::<String>() + "...";
        }
        table.add_row([
            s.id.to_string(),
            s.service_area.clone(),
            format!("{:?}", s.category),
            if s.required { "yes" } else { "no" }.to_string(),
            s.source.to_string(),
            s.ports.to_string(),
            s.urls.len().to_string(),
            s.ips.len().to_string(),
            notes,
        ]);
    }
    println!("{table}");
    Ok(())
}
