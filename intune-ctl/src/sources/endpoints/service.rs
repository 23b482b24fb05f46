//! The Microsoft 365 endpoint web service client: `/version/{Instance}` to learn whether the
//! list changed, `/endpoints/{Instance}` only when it did. HTTPS with certificate validation
//! (rustls, the system's roots), timeouts, retries with exponential backoff and jitter; a 429
//! is not retried but handed back with how long to wait.

use std::time::Duration;

use rand::Rng as _;
use serde::Deserialize;

use super::schema::{Category, EndpointSet, SchemaError, Source, parse_endpoint_sets};

pub const DEFAULT_URL: &str = "https://endpoints.office.com";
/// The service asks clients to check the version at most once an hour.
pub const MIN_INTERVAL: Duration = Duration::from_secs(3600);
/// How long to wait after a 429 that names no time.
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);
/// The longest wait a 429's Retry-After may ask for: the list must not go stale for weeks
/// because a header said so (or overflow a deadline).
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(24 * 3600);
/// The largest answer read: the real list is about 100 KB; a service that sends more is
/// broken or hostile, and must not exhaust a gateway's memory.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The service's instances.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Instance {
    #[default]
    Worldwide,
    #[value(name = "USGovDoD")]
    #[serde(rename = "USGovDoD")]
    UsGovDod,
    #[value(name = "USGovGCCHigh")]
    #[serde(rename = "USGovGCCHigh")]
    UsGovGccHigh,
    China,
}

impl Instance {
    pub fn as_str(self) -> &'static str {
        match self {
            Instance::Worldwide => "Worldwide",
            Instance::UsGovDod => "USGovDoD",
            Instance::UsGovGccHigh => "USGovGCCHigh",
            Instance::China => "China",
        }
    }
}

/// What to ask the service for and which of its sets to keep.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub base_url: String,
    pub instance: Instance,
    pub service_areas: Vec<String>,
    /// Common sets kept (the article's Intune dependencies); sets of other areas are all kept.
    pub common_sets: Vec<u32>,
    pub no_ipv6: bool,
    /// Keep only these categories; empty keeps all.
    pub categories: Vec<Category>,
    pub required_only: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Attempts on network errors and 5xx before giving up.
    pub attempts: u32,
    /// First retry delay; doubles each attempt, with up to 50% jitter.
    pub backoff: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            base_url: DEFAULT_URL.into(),
            instance: Instance::Worldwide,
            service_areas: vec!["MEM".into(), "Common".into()],
            common_sets: vec![56, 59, 97, 150],
            no_ipv6: false,
            categories: Vec::new(),
            required_only: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_secs(2),
        }
    }
}

impl ServiceConfig {
    /// What `[sources]` asks of the service; connections may take a third of a request.
    pub fn of(s: &crate::settings::SourcesSettings) -> ServiceConfig {
        let timeout = s.service_timeout.max(Duration::from_secs(1));
        ServiceConfig {
            base_url: s.service_url.clone(),
            instance: s.instance,
            service_areas: s.service_areas.clone(),
            common_sets: s.common_sets.clone(),
            no_ipv6: s.no_ipv6,
            categories: s.categories.clone(),
            required_only: s.required_only,
            connect_timeout: Duration::from_secs(timeout.as_secs().div_ceil(3).max(1)),
            request_timeout: timeout,
            ..ServiceConfig::default()
        }
    }

    pub fn is_default_url(&self) -> bool {
        self.base_url.trim_end_matches('/') == DEFAULT_URL
    }

    /// Whether the service keeps `set` under this configuration.
    pub fn keeps(&self, set: &EndpointSet) -> bool {
        (set.service_area != "Common" || self.common_sets.contains(&set.id))
            && (self.categories.is_empty() || self.categories.contains(&set.category))
            && (!self.required_only || set.required)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: rate limited (HTTP 429); waiting {}", humantime::format_duration(*wait))]
    RateLimited { url: String, wait: Duration },
    #[error("{url}: {source}")]
    Parse { url: String, source: SchemaError },
    #[error("{url}: the version answer is not {{\"instance\", \"latest\"}}: {message}")]
    Version { url: String, message: String },
    #[error(
        "{url}: the web service must be https (plain http only on a loopback address, for tests)"
    )]
    NotHttps { url: String },
    #[error("{url}: the answer is larger than {} MiB", MAX_BODY_BYTES >> 20)]
    TooLarge { url: String },
}

impl ServiceError {
    /// How long the caller must wait before asking again, when the service said so.
    pub fn wait(&self) -> Option<Duration> {
        match self {
            ServiceError::RateLimited { wait, .. } => Some(*wait),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct VersionAnswer {
    latest: String,
}

/// A fetched endpoint list: the body as sent and its kept sets.
#[derive(Clone, Debug)]
pub struct ServiceList {
    pub body: serde_json::Value,
    pub sets: Vec<EndpointSet>,
}

pub struct ServiceClient {
    http: reqwest::Client,
    cfg: ServiceConfig,
    client_request_id: uuid::Uuid,
}

impl ServiceClient {
    pub fn new(
        cfg: ServiceConfig,
        client_request_id: uuid::Uuid,
    ) -> Result<ServiceClient, ServiceError> {
        check_scheme(&cfg.base_url)?;
        // rustls needs a crypto provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            // A redirect could lead anywhere, plain http included: the configured URL answers
            // or the check fails.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("intune-ctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ServiceError::Http {
                url: cfg.base_url.clone(),
                message: error_chain(&e),
            })?;
        Ok(ServiceClient {
            http,
            cfg,
            client_request_id,
        })
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    fn url(&self, method: &str, query: &str) -> String {
        format!(
            "{}/{method}/{}?{query}ClientRequestId={}",
            self.cfg.base_url.trim_end_matches('/'),
            self.cfg.instance.as_str(),
            self.client_request_id
        )
    }

    /// The latest version of the instance's list.
    pub async fn version(&self) -> Result<String, ServiceError> {
        let url = self.url("version", "");
        let body = self.get(&url).await?;
        serde_json::from_str::<VersionAnswer>(&body)
            .map(|v| v.latest)
            .map_err(|e| ServiceError::Version {
                url,
                message: e.to_string(),
            })
    }

    /// The instance's endpoint sets, parsed, validated and filtered.
    pub async fn endpoints(&self) -> Result<ServiceList, ServiceError> {
        let mut query = format!("ServiceAreas={}&", self.cfg.service_areas.join(","));
        if self.cfg.no_ipv6 {
            query.push_str("NoIPv6=true&");
        }
        let url = self.url("endpoints", &query);
        let text = self.get(&url).await?;
        let parse = |source| ServiceError::Parse {
            url: url.clone(),
            source,
        };
        let body: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| parse(SchemaError::Json(e)))?;
        let sets = parse_endpoint_sets(&text, Source::Service).map_err(parse)?;
        let sets = sets.into_iter().filter(|s| self.cfg.keeps(s)).collect();
        Ok(ServiceList { body, sets })
    }

    /// GET `url` as the service's requests go: https, no redirect, 16 MiB at most, retries.
    pub async fn fetch(&self, url: &str) -> Result<String, ServiceError> {
        check_scheme(url)?;
        self.get(url).await
    }

    /// GET with retries on network errors and 5xx; 429 comes back as [`ServiceError::RateLimited`].
    async fn get(&self, url: &str) -> Result<String, ServiceError> {
        let mut delay = self.cfg.backoff;
        let mut attempt = 1;
        loop {
            match self.get_once(url).await {
                Ok(body) => return Ok(body),
                Err(
                    e @ (ServiceError::Http { .. }
                    | ServiceError::Status {
                        status: 500..=599, ..
                    }),
                ) if attempt < self.cfg.attempts => {
                    // Whole milliseconds: the log shows "2s 316ms", not nanoseconds.
                    let jitter = Duration::from_millis(
                        (delay.as_millis() as f64 * rand::rng().random_range(0.0..0.5)) as u64,
                    );
                    tracing::warn!(error = %e, attempt, retry_in = %humantime::format_duration(delay + jitter), "endpoint web service request failed; retrying");
                    tokio::time::sleep(delay + jitter).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_once(&self, url: &str) -> Result<String, ServiceError> {
        let http = |e: reqwest::Error| ServiceError::Http {
            url: url.to_string(),
            message: error_chain(&e.without_url()),
        };
        let mut response = self.http.get(url).send().await.map_err(http)?;
        let status = response.status().as_u16();
        if status == 429 {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(RATE_LIMIT_WAIT, |secs| {
                    Duration::from_secs(secs).min(MAX_RATE_LIMIT_WAIT)
                });
            return Err(ServiceError::RateLimited {
                url: url.to_string(),
                wait,
            });
        }
        if !(200..300).contains(&status) {
            return Err(ServiceError::Status {
                url: url.to_string(),
                status,
            });
        }
        let too_large = || ServiceError::TooLarge {
            url: url.to_string(),
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|e| ServiceError::Http {
            url: url.to_string(),
            message: format!("the answer is not UTF-8: {e}"),
        })
    }
}

/// https, or http to a loopback address (a test's local server).
pub fn check_scheme(base_url: &str) -> Result<(), ServiceError> {
    let not_https = || ServiceError::NotHttps {
        url: base_url.to_string(),
    };
    let url = reqwest::Url::parse(base_url).map_err(|_| not_https())?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(not_https()),
    }
}

/// An error with its causes, on one line: reqwest's own message says little ("error sending
/// request") without them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        for ok in [
            "https://endpoints.office.com",
            "http://127.0.0.1:8080",
            "http://[::1]:8080/",
            "http://localhost:1",
        ] {
            assert!(check_scheme(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://endpoints.office.com",
            "http://192.0.2.1",
            "ftp://127.0.0.1",
            "endpoints.office.com",
            "http://127.0.0.1.example.com",
        ] {
            let e = check_scheme(bad).expect_err(bad).to_string();
            assert!(e.contains("https"), "{bad}: {e}");
        }
    }
}
