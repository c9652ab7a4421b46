//! Detection latency when one probe hangs (issue 5): with a decisive answer the latency is bounded
//! by that answer plus the settle window; without one, by `[detection] timeout`.
//!
//! ```sh
//! cargo bench -p mslinkd --bench detect            # 40 rounds per case
//! cargo bench -p mslinkd --bench detect -- 100     # more rounds
//! ```
//!
//! Everything is local: a fake of Microsoft's user realm / OpenID configuration / Autodiscover v2
//! on 127.0.0.1 whose Autodiscover v2 accepts requests and never answers (the hanging probe),
//! dnsmasq (Debian `dnsmasq-base`) for MX and SRV when installed (else a closed UDP port, so DNS
//! fails fast), and the POX Autodiscover names on loopback addresses where nothing listens
//! (connections refused). Prints p50/p90/p99/max of `mslinkd::detect::detect` per case.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark program, not library code

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mslinkd::config::{Config, Env};

use mslink_e2e::dnsmasq::Dnsmasq;
use mslink_e2e::microsoft::{Domain, Microsoft, Realm, Tenant, V2};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn case(name: &str, decisive: bool, deadline: &str, nameserver: &str, rounds: usize) {
    // The user realm decides (Managed) or not (Unknown); no tenant; Autodiscover v2 hangs.
    let realm = if decisive { Realm::Managed } else { Realm::Unknown };
    let microsoft = Microsoft::for_every_domain(Domain::new(realm, Tenant::Missing, V2::Hang));
    let base = &microsoft.base;
    let text = format!(
        "[office365]\nauthority = \"{base}/organizations/v2.0\"\n\
         [detection]\ntimeout = \"{deadline}\"\n\
         user_realm_url = \"{base}/getuserrealm.srf\"\n\
         autodiscover_v2_url = \"{base}/autodiscover/autodiscover.json/v1.0\"\n\
         [network]\nnameservers = [\"{nameserver}\"]\n[network.resolve]\n\
         \"bench.test\" = \"{nobody}\"\n\"autodiscover.bench.test\" = \"{nobody}\"\n",
        nobody = Ipv4Addr::new(127, 254, 0, 1),
    );
    let config =
        Arc::new(Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap());
    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let started = Instant::now();
        let found = mslinkd::detect::detect(config.clone(), &format!("u{round}@bench.test")).await;
        took.push(started.elapsed());
        assert_eq!(found.provider.is_some(), decisive, "{found:#?}");
    }

    took.sort();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!(
        "{name:<44} deadline {deadline:>4}  n={rounds:<4} p50 {:>7} ms  p90 {:>7} ms  p99 {:>7} ms  max {:>7} ms",
        ms(percentile(&took, 0.50)),
        ms(percentile(&took, 0.90)),
        ms(percentile(&took, 0.99)),
        ms(took[took.len() - 1]),
    );
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    let dns = Dnsmasq::start(&["--mx-host=bench.test,mx1.bench.test,10".to_owned()]);
    let nameserver = match &dns {
        Some(dns) => dns.addr.clone(),
        None => {
            println!("(dnsmasq not installed: DNS goes to a closed port and fails fast)");
            let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            closed.local_addr().unwrap().to_string()
        }
    };
    println!("detection latency, Autodiscover v2 hanging (accepts, never answers):");
    case("decisive realm (Managed) + hanging probe", true, "5s", &nameserver, rounds).await;
    case("nothing decisive + hanging probe", false, "1s", &nameserver, rounds).await;
}
