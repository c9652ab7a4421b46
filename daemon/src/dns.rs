//! DNS lookups that obey `[network] nameservers` (SPEC §5): SRV for Exchange Autodiscover, and
//! the other record types provider detection needs. Address lookups for HTTP stay with the HTTP
//! client (which applies `[network] resolve`); this module is for records HTTP never asks for.
//!
//! ```text
//!   Network ──Dns::new──▶ resolver (configured nameservers, else the system's) ──srv()──▶ targets
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

use crate::config::Network;

/// A DNS lookup that failed; "no such record" is not an error but an empty answer.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot set up DNS resolution: {0}")]
    Setup(String),
    #[error("DNS lookup of {name} failed: {detail}")]
    Lookup { name: String, detail: String },
}

/// One SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    /// Host name without the trailing dot.
    pub host: String,
    pub port: u16,
}

/// A resolver built from `[network]`.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

impl Dns {
    /// A resolver that asks `network.nameservers` (one attempt each, so a test server that is
    /// down fails fast), or the system's resolvers when none are configured.
    pub fn new(network: &Network, timeout: Duration) -> Result<Dns, DnsError> {
        let mut builder = if network.nameservers.is_empty() {
            Resolver::builder(TokioRuntimeProvider::default())
                .map_err(|e| DnsError::Setup(e.to_string()))?
        } else {
            let servers = network.nameservers.iter().map(|addr| nameserver(*addr)).collect();
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = timeout;
        if !network.nameservers.is_empty() {
            options.attempts = 1;
        }
        let resolver = builder.build().map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(Dns { resolver })
    }

    /// SRV records for `name` (e.g. `_autodiscover._tcp.example.com`), best first: lowest
    /// priority, then highest weight. An empty list when the name has none.
    pub async fn srv(&self, name: &str) -> Result<Vec<SrvTarget>, DnsError> {
        let fqdn = if name.ends_with('.') { name.to_owned() } else { format!("{name}.") };
        let lookup = match self.resolver.srv_lookup(fqdn.as_str()).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
            Err(e) => {
                return Err(DnsError::Lookup { name: name.to_owned(), detail: e.to_string() });
            }
        };
        let mut targets: Vec<SrvTarget> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(SrvTarget {
                    priority: srv.priority,
                    weight: srv.weight,
                    host: srv.target.to_utf8().trim_end_matches('.').to_owned(),
                    port: srv.port,
                }),
                _ => None,
            })
            .filter(|t| !t.host.is_empty())
            .collect();
        targets.sort_by_key(|t| (t.priority, std::cmp::Reverse(t.weight)));
        Ok(targets)
    }
}

impl Dns {
    /// MX hosts for `domain` (without trailing dots), most preferred first. An empty list when
    /// the domain has none.
    pub async fn mx(&self, domain: &str) -> Result<Vec<String>, DnsError> {
        let fqdn = if domain.ends_with('.') { domain.to_owned() } else { format!("{domain}.") };
        let lookup = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
            Err(e) => {
                return Err(DnsError::Lookup { name: domain.to_owned(), detail: e.to_string() });
            }
        };
        let mut hosts: Vec<(u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => {
                    Some((mx.preference, mx.exchange.to_utf8().trim_end_matches('.').to_owned()))
                }
                _ => None,
            })
            .filter(|(_, host)| !host.is_empty())
            .collect();
        hosts.sort();
        Ok(hosts.into_iter().map(|(_, host)| host).collect())
    }
}

fn nameserver(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}
