//! The state directory: the installation's client request id, the last accepted web-service
//! response (the last-known-good cache) and the record of applied changes. Every file is
//! replaced atomically: written to a temporary file in the same directory, synced, renamed.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/intune-ctl";
const CLIENT_ID_FILE: &str = "client-request-id";
const CACHE_FILE: &str = "service-cache.json";
const CHANGES_FILE: &str = "changes.json";
const RULES_FILE: &str = "rules.json";
const RESOLVED_FILE: &str = "resolved.json";
const LEARNED_FILE: &str = "learned.json";
const LISTING_FILE: &str = "listing.json";
const SERVICE_TAGS_FILE: &str = "service-tags.json";
/// Changes kept in the record.
const CHANGES_KEPT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {dir}: {source}{}", if source.kind() == std::io::ErrorKind::PermissionDenied { " (are you root?)" } else { "" })]
    Io { dir: String, source: std::io::Error },
    #[error("{file} is corrupt: {message}")]
    Corrupt { file: String, message: String },
}

/// The last accepted response of the endpoint web service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CachedResponse {
    pub instance: String,
    pub version: String,
    /// RFC 3339.
    pub fetched_at: String,
    /// The response body as the service sent it.
    pub endpoints: serde_json::Value,
}

/// One applied change of the rule set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChangeRecord {
    /// RFC 3339.
    pub at: String,
    /// What caused it: "start", "service 2026033100", ...
    pub cause: String,
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    /// Prefixes added and removed per endpoint set id.
    pub per_set: Vec<SetChange>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SetChange {
    pub set: u32,
    pub added: usize,
    pub removed: usize,
}

/// One address a listed name resolved to, as the daemon records it for `list`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedAddress {
    pub address: std::net::IpAddr,
    pub name: String,
    pub endpoint_sets: Vec<u32>,
    /// RFC 3339: when the address leaves unless an answer holds it again.
    pub expires_at: String,
}

/// One address learned from a DNS answer, as the daemon records it for `list` and `stats`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LearnedAddress {
    pub address: std::net::IpAddr,
    /// The rule index its hits count under.
    pub index: u32,
    /// The name the device asked for.
    pub asked: String,
    /// The endpoint name (or wildcard) it matched.
    pub pattern: String,
    pub endpoint_sets: Vec<u32>,
    /// RFC 3339: when the address leaves unless an answer gives it again.
    pub expires_at: String,
}

/// A [`LearnedAddress`] as written, borrowing from the learner's table.
#[derive(Debug, serde::Serialize)]
pub struct LearnedRecord<'a> {
    pub address: std::net::IpAddr,
    pub index: u32,
    pub asked: &'a str,
    pub pattern: &'a str,
    pub endpoint_sets: &'a [u32],
    pub expires_at: String,
}

/// One rule the maps hold, as recorded in the state directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstalledRule {
    pub index: u32,
    /// A prefix, or "any" for the port-only rule.
    pub prefix: String,
    pub endpoint_sets: Vec<u32>,
    pub sources: Vec<String>,
    pub ports: String,
    pub excluded: bool,
}

impl InstalledRule {
    pub fn of(rules: &crate::ruleset::rules::RuleSet) -> Vec<InstalledRule> {
        rules
            .rules
            .iter()
            .map(|r| InstalledRule {
                index: r.index,
                prefix: r.target.to_string(),
                endpoint_sets: r.set_ids(),
                sources: r.sources(),
                ports: r.effective.to_string(),
                excluded: r.excluded,
            })
            .collect()
    }

    /// A learned address, as a rule of its own (source "learned").
    pub fn learned(l: &LearnedAddress) -> InstalledRule {
        InstalledRule {
            index: l.index,
            prefix: ipnet::IpNet::from(l.address).to_string(),
            endpoint_sets: l.endpoint_sets.clone(),
            sources: vec!["learned".into()],
            ports: String::new(),
            excluded: false,
        }
    }

    pub fn target(&self) -> Option<crate::ruleset::rules::Target> {
        match self.prefix.as_str() {
            "any" => Some(crate::ruleset::rules::Target::AnyAddress),
            p => p.parse().ok().map(crate::ruleset::rules::Target::Prefix),
        }
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// RFC 3339 time `after` from now.
pub fn rfc3339_in(after: std::time::Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + after).to_string()
}

pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens the directory, creating it (mode 0700) when missing.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::Io {
                dir: dir.display().to_string(),
                source,
            })?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn io(&self) -> impl Fn(std::io::Error) -> StateError + '_ {
        |source| StateError::Io {
            dir: self.dir.display().to_string(),
            source,
        }
    }

    /// Replaces `name` with `bytes`: temp file, fsync, rename, fsync the directory.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(self.io())?;
        tmp.write_all(bytes).map_err(self.io())?;
        self.persist(tmp, name)
    }

    /// Puts a written temporary file in place of `name`, on disk before and after.
    fn persist(&self, tmp: tempfile::NamedTempFile, name: &str) -> Result<(), StateError> {
        tmp.as_file().sync_all().map_err(self.io())?;
        tmp.persist(self.dir.join(name))
            .map_err(|e| self.io()(e.error))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io())
    }

    fn read(&self, name: &str) -> Result<Option<String>, StateError> {
        match std::fs::read_to_string(self.dir.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io()(e)),
        }
    }

    /// The installation's ClientRequestId, generated once and kept.
    pub fn client_request_id(&self) -> Result<uuid::Uuid, StateError> {
        if let Some(text) = self.read(CLIENT_ID_FILE)? {
            if let Ok(id) = text.trim().parse() {
                return Ok(id);
            }
            tracing::warn!(
                file = CLIENT_ID_FILE,
                "not a GUID; generating a new client request id"
            );
        }
        let id = uuid::Uuid::new_v4();
        self.write_atomic(CLIENT_ID_FILE, format!("{id}\n").as_bytes())?;
        Ok(id)
    }

    pub fn save_cache(&self, cache: &CachedResponse) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(cache).map_err(|e| StateError::Corrupt {
            file: CACHE_FILE.into(),
            message: e.to_string(),
        })?;
        self.write_atomic(CACHE_FILE, &text)
    }

    /// The cache, or `None` when there is none; a corrupt one is an error the caller reports
    /// and ignores.
    pub fn load_cache(&self) -> Result<Option<CachedResponse>, StateError> {
        let Some(text) = self.read(CACHE_FILE)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                file: self.dir.join(CACHE_FILE).display().to_string(),
                message: e.to_string(),
            })
    }

    /// Records the rules the maps hold, by kernel index: what a restarted daemon keeps the
    /// indices (and counters) of, and what `stats` names the counters with.
    pub fn save_rules(&self, rules: &[InstalledRule]) -> Result<(), StateError> {
        let text = serde_json::to_vec(rules).map_err(|e| StateError::Corrupt {
            file: RULES_FILE.into(),
            message: e.to_string(),
        })?;
        self.write_atomic(RULES_FILE, &text)
    }

    fn save_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let text = serde_json::to_vec(value).map_err(|e| StateError::Corrupt {
            file: name.into(),
            message: e.to_string(),
        })?;
        self.write_atomic(name, &text)
    }

    /// The list in `name`; empty when there is no such file.
    fn load_list<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Vec<T>, StateError> {
        let Some(text) = self.read(name)? else {
            return Ok(Vec::new());
        };
        serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            file: self.dir.join(name).display().to_string(),
            message: e.to_string(),
        })
    }

    /// What `list` shows of the installed rule set.
    pub fn save_listing(
        &self,
        listing: &crate::ruleset::listing::Listing,
    ) -> Result<(), StateError> {
        self.save_json(LISTING_FILE, listing)
    }

    /// The listing the daemon recorded, `None` when none is.
    pub fn load_listing(&self) -> Result<Option<crate::ruleset::listing::Listing>, StateError> {
        let path = self.path().join(LISTING_FILE);
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::Io {
                dir: path.display().to_string(),
                source: e,
            }),
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::Corrupt {
                        file: LISTING_FILE.into(),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// The service tags last accepted (the named tags only): the last-known-good a rejected
    /// file falls back to.
    pub fn save_service_tags(
        &self,
        tags: &crate::sources::endpoints::service_tags::TagsFile,
    ) -> Result<(), StateError> {
        self.save_json(SERVICE_TAGS_FILE, tags)
    }

    /// When the service tags in force were taken (the record's time).
    pub fn service_tags_taken_at(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.dir.join(SERVICE_TAGS_FILE))
            .and_then(|m| m.modified())
            .ok()
    }

    pub fn load_service_tags(
        &self,
    ) -> Result<Option<crate::sources::endpoints::service_tags::TagsFile>, StateError> {
        let Some(text) = self.read(SERVICE_TAGS_FILE)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                file: self.dir.join(SERVICE_TAGS_FILE).display().to_string(),
                message: e.to_string(),
            })
    }

    pub fn save_resolved(&self, held: &[ResolvedAddress]) -> Result<(), StateError> {
        self.save_json(RESOLVED_FILE, &held)
    }

    /// The resolved addresses the daemon last recorded (none when it resolves nothing).
    pub fn load_resolved(&self) -> Result<Vec<ResolvedAddress>, StateError> {
        self.load_list(RESOLVED_FILE)
    }

    /// Records the learned addresses, written as they are read from `learned`: a table at its
    /// cap holds 65,536 addresses, whose copy and text would double the learner's memory.
    pub fn save_learned_from<'a>(
        &self,
        learned: impl Iterator<Item = LearnedRecord<'a>>,
    ) -> Result<(), StateError> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(self.io())?;
        {
            let mut out = std::io::BufWriter::new(tmp.as_file_mut());
            let corrupt = |e: serde_json::Error| StateError::Corrupt {
                file: LEARNED_FILE.into(),
                message: e.to_string(),
            };
            out.write_all(b"[").map_err(self.io())?;
            for (i, record) in learned.enumerate() {
                if i > 0 {
                    out.write_all(b",").map_err(self.io())?;
                }
                serde_json::to_writer(&mut out, &record).map_err(corrupt)?;
            }
            out.write_all(b"]").map_err(self.io())?;
            out.flush().map_err(self.io())?;
        }
        self.persist(tmp, LEARNED_FILE)
    }

    /// The addresses the daemon last recorded as learned from DNS answers.
    pub fn load_learned(&self) -> Result<Vec<LearnedAddress>, StateError> {
        self.load_list(LEARNED_FILE)
    }

    /// The rules the maps held, or `None` when none were recorded.
    pub fn load_rules(&self) -> Result<Option<Vec<InstalledRule>>, StateError> {
        let Some(text) = self.read(RULES_FILE)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                file: self.dir.join(RULES_FILE).display().to_string(),
                message: e.to_string(),
            })
    }

    pub fn changes(&self) -> Result<Vec<ChangeRecord>, StateError> {
        let Some(text) = self.read(CHANGES_FILE)? else {
            return Ok(Vec::new());
        };
        serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            file: self.dir.join(CHANGES_FILE).display().to_string(),
            message: e.to_string(),
        })
    }

    /// Appends a change, keeping the last [`CHANGES_KEPT`]. A corrupt record is started anew.
    pub fn record_change(&self, change: ChangeRecord) -> Result<(), StateError> {
        let mut all = self.changes().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "starting a new change record");
            Vec::new()
        });
        all.push(change);
        let skip = all.len().saturating_sub(CHANGES_KEPT);
        let text = serde_json::to_vec_pretty(&all[skip..]).map_err(|e| StateError::Corrupt {
            file: CHANGES_FILE.into(),
            message: e.to_string(),
        })?;
        self.write_atomic(CHANGES_FILE, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        let id = state.client_request_id().unwrap();
        assert_eq!(state.client_request_id().unwrap(), id);
        assert_eq!(
            StateDir::open(state.path())
                .unwrap()
                .client_request_id()
                .unwrap(),
            id
        );
    }

    #[test]
    fn learned_addresses_written_from_borrowed_records_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let sets = [7u32, 9];
        let records = ["2001:db8::1", "192.0.2.7"].map(|a| LearnedRecord {
            address: a.parse().unwrap(),
            index: 70_000,
            asked: "a.manage.microsoft.com",
            pattern: "*.manage.microsoft.com",
            endpoint_sets: &sets,
            expires_at: "2026-12-02T10:00:00Z".into(),
        });
        state.save_learned_from(records.into_iter()).unwrap();
        let back = state.load_learned().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            back[1].address,
            "192.0.2.7".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(back[0].endpoint_sets, [7, 9]);
        assert_eq!(back[0].pattern, "*.manage.microsoft.com");
        state.save_learned_from(std::iter::empty()).unwrap();
        assert_eq!(state.load_learned().unwrap(), []);
    }

    #[test]
    fn cache_round_trips_and_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.load_cache().unwrap(), None);
        let cache = CachedResponse {
            instance: "Worldwide".into(),
            version: "2026033100".into(),
            fetched_at: now_rfc3339(),
            endpoints: serde_json::json!([{"id": 1}]),
        };
        state.save_cache(&cache).unwrap();
        assert_eq!(state.load_cache().unwrap(), Some(cache));
        std::fs::write(dir.path().join(CACHE_FILE), "{\"version\": ").unwrap();
        assert!(matches!(
            state.load_cache(),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn the_change_record_keeps_the_last_hundred() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        for i in 0..105 {
            state
                .record_change(ChangeRecord {
                    at: now_rfc3339(),
                    cause: format!("test {i}"),
                    added: i,
                    removed: 0,
                    changed: 0,
                    per_set: vec![],
                })
                .unwrap();
        }
        let all = state.changes().unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(all[0].cause, "test 5");
    }
}
