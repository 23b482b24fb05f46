//! Where endpoint sets come from, in the Microsoft 365 endpoint web service's own schema.

pub mod builtin;
pub mod merge;
pub mod order;
pub mod ports;
mod prefix_list;
pub mod schema;
pub mod service;
pub mod service_tags;

use std::path::Path;

pub use ports::Ports;
pub use schema::{
    Category, EndpointSet, Origin, SchemaError, Source, Sources, parse_endpoint_sets,
};

/// The built-in list when `files` is empty, else the sets of the files together.
pub fn from_files_or_builtin(files: &[std::path::PathBuf]) -> anyhow::Result<Vec<EndpointSet>> {
    if files.is_empty() {
        return Ok(builtin::builtin()?);
    }
    let mut sets: Vec<EndpointSet> = Vec::new();
    for file in files {
        for set in read_file(file)? {
            if sets.iter().any(|s| s.id == set.id) {
                anyhow::bail!(
                    "endpoint file {}: endpoint set id {} is also in an earlier file",
                    file.display(),
                    set.id
                );
            }
            sets.push(set);
        }
    }
    Ok(sets)
}

/// Reads an endpoint file in the service's schema.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<EndpointSet>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read endpoint file {}", path.display()))?;
    parse_endpoint_sets(&text, Source::File)
        .with_context(|| format!("endpoint file {}", path.display()))
}
