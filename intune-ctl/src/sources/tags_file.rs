//! The Azure service tags source as the daemon keeps it: the file an admin downloads (weekly),
//! read at start and on every reload, checked against the selection last accepted (kept in
//! the state directory), which stays in force when a new file is rejected.

use std::path::Path;

use anyhow::Context as _;

use crate::{
    daemon::state::StateDir,
    settings::ServiceTagsSettings,
    sources::endpoints::{
        EndpointSet,
        service_tags::{TagsFile, parse},
    },
};

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
pub fn load(
    s: &ServiceTagsSettings,
    max_shrink: f64,
    state_dir: &Path,
    record: bool,
) -> anyhow::Result<Loaded> {
    let ports = s.ports().map_err(anyhow::Error::msg)?;
    let state = StateDir::open(state_dir).ok();
    let previous = state
        .as_ref()
        .and_then(|st| match st.load_service_tags() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the recorded service tags");
                None
            }
        })
        // A selection of other tags says nothing about these.
        .filter(|p| p.values.len() == s.tags.len() && p.select(&s.tags).is_ok());
    let fresh = read(s, previous.as_ref(), max_shrink);
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

fn read(
    s: &ServiceTagsSettings,
    previous: Option<&TagsFile>,
    max_shrink: f64,
) -> anyhow::Result<TagsFile> {
    let what = || format!("service tags file {}", s.file.display());
    let text =
        std::fs::read_to_string(&s.file).with_context(|| format!("cannot read {}", what()))?;
    let file = parse(&text)
        .and_then(|f| f.select(&s.tags))
        .with_context(what)?;
    if let Some(previous) = previous {
        file.guard(previous, max_shrink).with_context(what)?;
    }
    Ok(file)
}
