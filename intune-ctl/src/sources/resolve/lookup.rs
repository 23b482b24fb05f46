//! One name's A and AAAA answers, with their TTL and CNAME chain, from hickory-resolver.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_resolver::{
    TokioResolver,
    config::{NameServerConfig, ResolverConfig, ResolverOpts},
    net::{NetError, runtime::TokioRuntimeProvider},
    proto::{
        op::ResponseCode,
        rr::{RData, RecordType},
    },
};
use serde::Serialize;

/// Where to ask and how patiently.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Resolvers to ask; empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// How long one query waits for an answer.
    pub timeout: Duration,
    /// Queries per server before a lookup fails.
    pub attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Duration::from_secs(3),
            attempts: 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reading the system's resolver configuration: {0}")]
pub struct SetupError(NetError);

/// What one name resolved to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// IPv4 then IPv6 addresses, sorted.
    pub addrs: Vec<IpAddr>,
    /// The shortest TTL on the way (CNAMEs included); the negative TTL when there is no address.
    #[serde(with = "secs")]
    pub ttl: Duration,
    /// The CNAME targets followed, in order.
    pub chain: Vec<String>,
}

/// Why a name has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupError {
    #[error("NXDOMAIN")]
    NxDomain,
    #[error("SERVFAIL")]
    ServFail,
    #[error("REFUSED")]
    Refused,
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Other(String),
}

/// Seconds as a number in JSON.
mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    pub fn new(config: &DnsConfig) -> Result<Dns, SetupError> {
        let mut builder = if config.servers.is_empty() {
            TokioResolver::builder_tokio().map_err(SetupError)?
        } else {
            let servers = config
                .servers
                .iter()
                .map(|addr| {
                    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                    for conn in &mut server.connections {
                        conn.port = addr.port();
                    }
                    server
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        // We schedule by TTL ourselves: a cached answer would hide a change.
        opts.cache_size = 0;
        opts.preserve_intermediates = true;
        let resolver = builder.build().map_err(SetupError)?;
        Ok(Dns { resolver })
    }

    /// A and AAAA for `name` (a name of the list, never a search-list guess).
    pub async fn resolve(&self, name: &str) -> Result<Answer, LookupError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let (v4, v6) = tokio::join!(
            self.family(&fqdn, RecordType::A),
            self.family(&fqdn, RecordType::AAAA)
        );
        match (v4, v6) {
            (Err(a), Err(b)) => Err(worse(a, b)),
            (a, b) => {
                let families: Vec<Answer> = [a, b].into_iter().flatten().collect();
                // The TTL of the addresses; a family with none (NODATA) only counts when
                // neither has any: its negative TTL must not hasten the other's lookups.
                let with_addrs = families.iter().filter(|f| !f.addrs.is_empty());
                let ttl = with_addrs
                    .map(|f| f.ttl)
                    .min()
                    .or_else(|| families.iter().map(|f| f.ttl).min())
                    .unwrap_or_default();
                let chain = families
                    .iter()
                    .map(|f| f.chain.clone())
                    .max_by_key(Vec::len)
                    .unwrap_or_default();
                let mut addrs: Vec<IpAddr> = families.into_iter().flat_map(|f| f.addrs).collect();
                addrs.sort();
                addrs.dedup();
                Ok(Answer { addrs, ttl, chain })
            }
        }
    }

    async fn family(&self, fqdn: &str, rtype: RecordType) -> Result<Answer, LookupError> {
        match self.resolver.lookup(fqdn, rtype).await {
            Ok(lookup) => {
                let mut answer = Answer {
                    addrs: Vec::new(),
                    ttl: Duration::MAX,
                    chain: Vec::new(),
                };
                for record in lookup.answers() {
                    answer.ttl = answer.ttl.min(Duration::from_secs(record.ttl.into()));
                    match &record.data {
                        RData::A(a) => answer.addrs.push(IpAddr::V4(a.0)),
                        RData::AAAA(a) => answer.addrs.push(IpAddr::V6(a.0)),
                        RData::CNAME(c) => answer.chain.push(display_name(&c.0.to_string())),
                        _ => {}
                    }
                }
                Ok(answer)
            }
            Err(e) => classify(e),
        }
    }
}

/// A name without the root's dot.
fn display_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// No records of this type (NODATA) is an empty answer; the rest are errors.
fn classify(e: NetError) -> Result<Answer, LookupError> {
    use hickory_resolver::net::DnsError;
    match e {
        NetError::Dns(DnsError::NoRecordsFound(no)) => match no.response_code {
            ResponseCode::NXDomain => Err(LookupError::NxDomain),
            _ => Ok(Answer {
                addrs: Vec::new(),
                ttl: Duration::from_secs(no.negative_ttl.unwrap_or(0).into()),
                chain: Vec::new(),
            }),
        },
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => Err(LookupError::ServFail),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => Err(LookupError::Refused),
        NetError::Timeout => Err(LookupError::Timeout),
        other => Err(LookupError::Other(other.to_string())),
    }
}

/// Of two failures, the one that says most about the name.
fn worse(a: LookupError, b: LookupError) -> LookupError {
    fn rank(e: &LookupError) -> u8 {
        match e {
            LookupError::NxDomain => 0,
            LookupError::ServFail => 1,
            LookupError::Refused => 2,
            LookupError::Timeout => 3,
            LookupError::Other(_) => 4,
        }
    }
    if rank(&b) < rank(&a) { b } else { a }
}
