//! From the settings' sources to a rule set. The built-in list is parsed and the endpoint files
//! are read once, when the builder is made: a rebuild (a new service list, names that came or
//! went) touches neither the disk nor the parser.

use anyhow::Context as _;
use ipnet::IpNet;

use super::rules::{RuleSet, RuleSetOptions};
use crate::{
    settings::Settings,
    sources::{
        endpoints::{
            self, EndpointSet,
            builtin::builtin,
            merge::{self, Selection},
        },
        tags_file,
    },
};

/// Everything but the service's list and the resolved names, read and checked.
#[derive(Clone, Debug)]
pub struct RuleBuilder {
    builtin: Vec<EndpointSet>,
    selection: Selection,
    options: RuleSetOptions,
    tags: tags_file::Loaded,
}

impl RuleBuilder {
    /// Reads the files `[sources]` names and checks its exclusions.
    pub fn new(settings: &Settings) -> anyhow::Result<RuleBuilder> {
        Self::reading(settings, false)
    }

    /// As [`RuleBuilder::new`], for the daemon: service tags it takes become the
    /// last-known-good in the state directory.
    pub fn for_daemon(settings: &Settings) -> anyhow::Result<RuleBuilder> {
        Self::reading(settings, true)
    }

    fn reading(settings: &Settings, record: bool) -> anyhow::Result<RuleBuilder> {
        let s = &settings.sources;
        let tags = match &s.service_tags {
            Some(t) => tags_file::load(t, s.max_shrink, &settings.paths.state_dir, record)?,
            None => tags_file::Loaded::default(),
        };
        let mut files: Vec<EndpointSet> = Vec::new();
        for file in &s.files {
            files.extend(endpoints::read_file(file)?);
        }
        let mut exclude = Vec::new();
        let mut exclude_names = Vec::new();
        for e in &s.exclude {
            match e.parse::<IpNet>() {
                Ok(net) => exclude.push(net.trunc()),
                Err(_) if e.contains('/') => anyhow::bail!(
                    "--exclude {e:?} is neither a prefix nor a host name (sources.exclude)"
                ),
                Err(_) => exclude_names.push(e.clone()),
            }
        }
        Ok(RuleBuilder {
            builtin: if s.builtin { builtin()? } else { Vec::new() },
            selection: Selection {
                builtin: s.builtin,
                files,
                exclude_names,
                region: s.region,
                skip_sets: s.skip_sets.clone(),
                service_tags: tags.sets.clone(),
            },
            options: RuleSetOptions {
                port_only: settings.policy.peer_ports,
                exclude,
                // The program is loaded with room for what the rule set needs (see
                // `Capacity::for_prefixes`): as many rules as the IPv4 trie can hold.
                max_rules: intune_common::maps::MAX_PREFIXES_V4 as usize,
            },
            tags,
        })
    }

    /// A downloaded selection of service tags replaces the one in force.
    pub fn set_service_tags(&mut self, sets: Vec<EndpointSet>) {
        self.selection.service_tags.clone_from(&sets);
        self.tags.sets = sets;
        self.tags.rejected = None;
    }

    /// The service tags in force, and why a configured file is not (when it is rejected).
    pub fn service_tags(&self) -> &tags_file::Loaded {
        &self.tags
    }

    /// The local files' sets, as read.
    pub fn files(&self) -> &[EndpointSet] {
        &self.selection.files
    }

    /// The effective endpoint sets with `service`'s.
    pub fn effective(&self, service: &[EndpointSet]) -> Vec<EndpointSet> {
        merge::effective(&self.selection, &self.builtin, service)
    }

    /// The effective sets with `service`'s, and the rule set of those and `resolved` (the
    /// addresses the listed names resolved or were learned to); `previous` keeps its indices.
    pub fn build(
        &self,
        service: &[EndpointSet],
        resolved: &[EndpointSet],
        previous: Option<&RuleSet>,
    ) -> anyhow::Result<(Vec<EndpointSet>, RuleSet)> {
        let sets = self.effective(service);
        let all = [&sets[..], resolved].concat();
        let rules =
            RuleSet::build(&all, &self.options, previous).context("building the rule set")?;
        Ok((sets, rules))
    }
}
