//! Where webhooks may connect: public addresses only, unless an operator
//! lists a private network in `webhooks.allowed_networks`.
//!
//! An instance key chooses its webhook's URL, so without this check the
//! server would be its holder's proxy into the networks the server sits in
//! (loopback services, a cloud's metadata address, the private LAN, the
//! server's own ports). The check is made where the address is known for
//! sure: this module is the HTTP client's DNS resolver, so every connection
//! is checked against the addresses it will really use, after resolution
//! (a name that resolves to a public address at `webhook/set` and to a
//! private one later is still refused). A URL naming an address directly
//! is never resolved, so [`Targets::check_url`] checks it before each
//! request; and redirects are not followed at all, so every hop is a URL
//! that was checked.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::Network;

/// Why a webhook target is refused. Its text is safe to show the instance's
/// owner: it says which rule refused, never whether a port answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the receiver's address is not public (loopback, private, link-local or this server's own), \
     and webhooks.allowed_networks does not list it"
)]
pub struct Refused;

/// The rule every webhook connection goes through.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Networks allowed although they are not public.
    allowed: Vec<Network>,
}

impl Targets {
    pub fn new(allowed: Vec<Network>) -> Targets {
        Targets { allowed }
    }

    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.allowed.iter().any(|net| net.contains(ip)) {
            return true;
        }
        is_public(ip) && !is_own(ip)
    }

    /// Checks a URL whose host is an address (those are never resolved, so
    /// the resolver below does not see them). Names pass here and are
    /// checked when they are resolved.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) | None => return Ok(()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Refused)
        }
    }
}

impl Resolve for Targets {
    fn resolve(&self, name: Name) -> Resolving {
        let targets = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The port is replaced by the URL's; 0 only satisfies the lookup.
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let usable: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| targets.permits(addr.ip()))
                .collect();
            if usable.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(usable.into_iter()) as Addrs)
        })
    }
}

/// Makes [`Targets`] the resolver of a client (reqwest wants an `Arc`).
pub fn resolver(targets: &Targets) -> Arc<Targets> {
    Arc::new(targets.clone())
}

/// Whether an address is reachable on the public internet: not loopback,
/// private, shared (CGNAT), link-local, unique-local, unspecified,
/// multicast, broadcast, documentation, benchmarking or reserved, and not
/// an IPv6 form that embeds such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        // "This network" 0.0.0.0/8.
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (b & 0xC0) == 64)
        // IETF protocol assignments, 192.0.0.0/24.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && (b & 0xFE) == 18)
        // Reserved, 240.0.0.0/4.
        || a >= 240;
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // Forms that carry an IPv4 address a router would reach: NAT64
    // (64:ff9b::/96) and 6to4 (2002::/16) are as public as that address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if segments[0] == 0x2002 {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // IPv4-compatible (deprecated) ::/96 and the discard prefix 100::/64.
        || segments[..6] == [0; 6]
        || segments[..4] == [0x100, 0, 0, 0]
        // Documentation, 2001:db8::/32.
        || (segments[0] == 0x2001 && segments[1] == 0xdb8)
        // Site-local (deprecated), fec0::/10.
        || (segments[0] & 0xffc0) == 0xfec0;
    !special
}

/// Whether an address belongs to this machine (so to the server itself,
/// whatever it listens on). Read at each check: interfaces come and go.
fn is_own(ip: IpAddr) -> bool {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        // Unknown: the other rules still hold, and a public address of
        // this host is rare enough not to refuse every delivery for it.
        return false;
    };
    interfaces
        .filter_map(|interface| interface.address)
        .filter_map(|address| {
            if let Some(v4) = address.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .any(|own| own.to_canonical() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn every_kind_of_non_public_address_is_refused() {
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.5",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(!is_public(ip(refused)), "{refused} must not be public");
            assert!(
                !Targets::default().permits(ip(refused)),
                "{refused} must be refused"
            );
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn the_allowlist_opens_exactly_the_networks_it_names() {
        let targets = Targets::new(vec![
            "127.0.0.0/8".parse().expect("net"),
            "10.1.2.3".parse().expect("addr"),
        ]);
        assert!(targets.permits(ip("127.0.0.1")));
        assert!(targets.permits(ip("::ffff:127.0.0.1")));
        assert!(targets.permits(ip("10.1.2.3")));
        assert!(!targets.permits(ip("10.1.2.4")));
        assert!(!targets.permits(ip("::1")));
        assert!(!targets.permits(ip("169.254.169.254")));
    }

    #[test]
    fn urls_naming_an_address_are_checked_and_names_are_left_to_the_resolver() {
        let targets = Targets::default();
        for refused in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:7f00:1]/",
        ] {
            let url = reqwest::Url::parse(refused).expect("url");
            assert_eq!(targets.check_url(&url), Err(Refused), "{refused}");
        }
        let named = reqwest::Url::parse("http://localhost:8080/").expect("url");
        assert_eq!(targets.check_url(&named), Ok(()));
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_by_the_resolver() {
        let refused = Targets::default()
            .resolve("localhost".parse().expect("a name"))
            .await;
        let err = refused.err().expect("refused");
        assert!(err.downcast_ref::<Refused>().is_some(), "{err}");
        let allowed = Targets::new(vec![
            "127.0.0.0/8".parse().expect("net"),
            "::1".parse().expect("addr"),
        ])
        .resolve("localhost".parse().expect("a name"))
        .await
        .expect("allowed");
        assert!(allowed.into_iter().all(|a| a.ip().is_loopback()));
    }
}
