//! The Azure service tags source as the daemon keeps it: the file an admin downloads (weekly),
//! read at start and on every reload, or the download URL, fetched at most daily; either
//! checked against the selection last accepted (kept in the state directory), which stays in
//! force when a new file is rejected.

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;

use crate::{
    daemon::state::StateDir,
    settings::{ServiceTagsSettings, SourcesSettings},
    sources::{
        endpoints::{
            EndpointSet, Ports,
            service::{ServiceClient, ServiceConfig},
            service_tags::{TagsFile, parse},
        },
        refresh::{census, validate},
    },
};

/// A downloaded file is fetched again a day after it was taken: Microsoft publishes weekly.
pub const FETCH_EVERY: Duration = Duration::from_secs(24 * 3600);
/// After a failed download, the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The tags in force.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub sets: Vec<EndpointSet>,
    /// The named tags of the file in force.
    pub file: Option<TagsFile>,
    /// Why the configured file is not the one in force (the last accepted is).
    pub rejected: Option<String>,
}

/// Reads `s.file` and takes its named tags, unless they fail the checks or shrink a tag of the
/// last accepted selection (in `state_dir`) by more than `max_shrink`: then that selection
/// stays, and `rejected` says why. With nothing accepted before, a bad file is an error.
/// `record`: the daemon keeps an accepted selection as the new last-known-good.
/// With a `url` instead of a file, the selection last downloaded (none before the first
/// download: the poller fetches it).
pub fn load(
    s: &ServiceTagsSettings,
    max_shrink: f64,
    state_dir: &Path,
    record: bool,
) -> anyhow::Result<Loaded> {
    let ports = s.ports().map_err(anyhow::Error::msg)?;
    let state = StateDir::open(state_dir).ok();
    let previous = last_taken(s, state.as_ref());
    let Some(file) = &s.file else {
        return Ok(match previous {
            Some(previous) => Loaded {
                sets: previous.sets(&ports)?,
                file: Some(previous),
                rejected: None,
            },
            None => Loaded::default(),
        });
    };
    let fresh = read(file, s, previous.as_ref(), max_shrink);
    match (fresh, previous) {
        (Ok(file), _) => {
            if record && let Some(st) = &state {
                st.save_service_tags(&file)
                    .context("recording the service tags taken")?;
            }
            Ok(Loaded {
                sets: file.sets(&ports)?,
                file: Some(file),
                rejected: None,
            })
        }
        (Err(e), Some(previous)) => Ok(Loaded {
            sets: previous.sets(&ports)?,
            rejected: Some(format!(
                "{e:#}; the service tags taken before (changeNumber {}) stay",
                previous.change_number
            )),
            file: Some(previous),
        }),
        (Err(e), None) => Err(e),
    }
}

/// The selection of these tags last taken, if any.
fn last_taken(s: &ServiceTagsSettings, state: Option<&StateDir>) -> Option<TagsFile> {
    state
        .and_then(|st| match st.load_service_tags() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the recorded service tags");
                None
            }
        })
        // A selection of other tags says nothing about these.
        .filter(|p| p.values.len() == s.tags.len() && p.select(&s.tags).is_ok())
}

fn read(
    path: &Path,
    s: &ServiceTagsSettings,
    previous: Option<&TagsFile>,
    max_shrink: f64,
) -> anyhow::Result<TagsFile> {
    let what = || format!("service tags file {}", path.display());
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", what()))?;
    take(&text, s, previous, max_shrink).with_context(what)
}

/// The named tags of `text`, checked against `previous`.
fn take(
    text: &str,
    s: &ServiceTagsSettings,
    previous: Option<&TagsFile>,
    max_shrink: f64,
) -> anyhow::Result<TagsFile> {
    let file = parse(text).and_then(|f| f.select(&s.tags))?;
    if let Some(previous) = previous {
        file.guard(previous, max_shrink)?;
    }
    // And the web service's guards on the whole: not empty, not shrinking or growing past its
    // limits, a first selection of at most 20,000 prefixes (the ports play no part).
    let sets = |f: &TagsFile| f.sets(&Ports::default());
    let before = previous.map(sets).transpose()?;
    validate(
        &sets(&file)?,
        before.as_deref().map(census).as_ref(),
        max_shrink,
    )?;
    Ok(file)
}

/// Downloads the service tags from `[sources] service_tags.url` with the web service's client
/// (https, no redirect, 16 MiB at most, retries), checks them as a file is checked, and records
/// what it takes as the new last-known-good.
pub struct TagsPoller {
    client: ServiceClient,
    url: String,
    settings: ServiceTagsSettings,
    max_shrink: f64,
    state: StateDir,
}

impl TagsPoller {
    /// The poller `[sources]` asks for: `None` unless the tags come from a URL.
    pub fn of(s: &SourcesSettings, state_dir: &Path) -> anyhow::Result<Option<TagsPoller>> {
        let Some(tags) = &s.service_tags else {
            return Ok(None);
        };
        let Some(url) = &tags.url else {
            return Ok(None);
        };
        let cfg = ServiceConfig {
            base_url: url.clone(),
            ..ServiceConfig::of(s)
        };
        Ok(Some(TagsPoller {
            client: ServiceClient::new(cfg, uuid::Uuid::nil())?,
            url: url.clone(),
            settings: tags.clone(),
            max_shrink: s.max_shrink,
            state: StateDir::open(state_dir)?,
        }))
    }

    /// When the next download is due: a day after the selection in force was taken (now when
    /// there is none).
    pub fn next_due(&self) -> Instant {
        let age = self
            .state
            .service_tags_taken_at()
            .and_then(|at| SystemTime::now().duration_since(at).ok());
        match age {
            Some(age) if last_taken(&self.settings, Some(&self.state)).is_some() => {
                Instant::now() + FETCH_EVERY.saturating_sub(age)
            }
            _ => Instant::now(),
        }
    }

    /// Downloads, checks and records the tags: the sets they make. An error leaves the
    /// selection in force as it was.
    pub async fn poll(&self) -> anyhow::Result<Vec<EndpointSet>> {
        let file = self.download().await?;
        self.state
            .save_service_tags(&file)
            .context("recording the service tags taken")?;
        self.sets_of(&file)
    }

    /// Downloads and checks the tags, recording nothing: what `endpoints` shows.
    pub async fn fetch(&self) -> anyhow::Result<Vec<EndpointSet>> {
        let file = self.download().await?;
        self.sets_of(&file)
    }

    async fn download(&self) -> anyhow::Result<TagsFile> {
        let text = self.client.fetch(&self.url).await?;
        let previous = last_taken(&self.settings, Some(&self.state));
        take(&text, &self.settings, previous.as_ref(), self.max_shrink)
            .with_context(|| format!("service tags from {}", self.url))
    }

    fn sets_of(&self, file: &TagsFile) -> anyhow::Result<Vec<EndpointSet>> {
        let ports = self.settings.ports().map_err(anyhow::Error::msg)?;
        Ok(file.sets(&ports)?)
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tags: &[&str]) -> ServiceTagsSettings {
        ServiceTagsSettings {
            file: None,
            url: None,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            tcp_ports: "443".into(),
            udp_ports: String::new(),
        }
    }

    /// A file of one tag with `n` /24 prefixes in 10.0.0.0/8 and 11.0.0.0/8.
    fn file_of(n: usize) -> String {
        let prefixes: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "\"{}.{}.{}.0/24\"",
                    10 + i / 65536,
                    (i / 256) % 256,
                    i % 256
                )
            })
            .collect();
        format!(
            r#"{{"changeNumber": 1, "cloud": "Public", "values": [{{"name": "Big", "id": "Big",
                "properties": {{"changeNumber": 1, "addressPrefixes": [{}]}}}}]}}"#,
            prefixes.join(",")
        )
    }

    #[test]
    fn the_web_services_growth_guards_hold_for_tags_too() {
        let s = settings(&["Big"]);
        let small = take(&file_of(100), &s, None, 0.5).unwrap();
        assert_eq!(small.values[0].properties.address_prefixes.len(), 100);
        // A first selection past 20,000 prefixes.
        let err = take(&file_of(20_001), &s, None, 0.5).unwrap_err();
        assert!(
            format!("{err:#}").contains("it would add 20001 prefixes"),
            "{err:#}"
        );
        // Growing from 6,000 to 30,000: more than four times what is in force.
        let before = take(&file_of(6_000), &s, None, 0.5).unwrap();
        let err = take(&file_of(30_001), &s, Some(&before), 0.5).unwrap_err();
        assert!(
            format!("{err:#}").contains("more than 4 times as many"),
            "{err:#}"
        );
        assert!(take(&file_of(20_000), &s, Some(&before), 0.5).is_ok());
    }
}
