//! Spreading connections over loopback source addresses.
//!
//! A client socket bound to one source address gets its local port from the
//! ephemeral range (32768–60999 by default: about 28k ports), so one address
//! cannot hold more connections than that. Every 127.0.0.0/8 address is
//! local on Linux, so binding connection `i` to 127.0.0.(1 + i mod N) before
//! connecting multiplies the ceiling by N.

use std::net::{IpAddr, Ipv4Addr};

/// Connections placed on one source address when the count is chosen
/// automatically: well under the ~28k ephemeral ports, leaving room for
/// sockets in TIME_WAIT from earlier runs.
pub const PER_ADDRESS: usize = 20_000;
/// Highest last octet used: 127.0.0.1 ..= 127.0.0.254.
pub const MAX_ADDRESSES: u8 = 254;

/// Where connection `i` binds before it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAddrs {
    /// How many addresses, 127.0.0.1 ..= 127.0.0.count.
    count: u8,
}

impl SourceAddrs {
    /// The spread for `connections` to `target`: `None` (let the kernel
    /// choose) unless the target is an IPv4 loopback address, because a
    /// 127.x source cannot reach anything else. `requested` fixes the number
    /// of addresses; otherwise one per [`PER_ADDRESS`] connections.
    pub fn plan(
        target: IpAddr,
        connections: usize,
        requested: Option<u8>,
    ) -> Result<Option<SourceAddrs>, String> {
        let IpAddr::V4(v4) = target else {
            return match requested {
                Some(_) => Err("--source-addrs needs an IPv4 loopback target (127.x.x.x)".into()),
                None => Ok(None),
            };
        };
        if !v4.is_loopback() {
            return match requested {
                Some(_) => Err(format!("--source-addrs needs a loopback target, not {v4}")),
                None => Ok(None),
            };
        }
        let count = match requested {
            Some(0) => return Err("--source-addrs must be at least 1".into()),
            Some(n) if n > MAX_ADDRESSES => {
                return Err(format!("--source-addrs must be at most {MAX_ADDRESSES}"))
            }
            Some(n) => n,
            None => {
                let needed = connections.div_ceil(PER_ADDRESS).max(1);
                if needed > usize::from(MAX_ADDRESSES) {
                    return Err(format!(
                        "{connections} connections need more than {MAX_ADDRESSES} source addresses"
                    ));
                }
                needed as u8
            }
        };
        Ok(Some(SourceAddrs { count }))
    }

    /// How many addresses are used.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// The source address of connection `i` (round robin, so every address
    /// carries an equal share at every moment of a gradual connect).
    pub fn for_connection(&self, i: usize) -> Ipv4Addr {
        let octet = (i % usize::from(self.count)) as u8 + 1;
        Ipv4Addr::new(127, 0, 0, octet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    #[test]
    fn few_connections_use_one_address() {
        let spread = SourceAddrs::plan(loopback(), 1_000, None).unwrap().unwrap();
        assert_eq!(spread.count(), 1);
        assert_eq!(spread.for_connection(999), Ipv4Addr::new(127, 0, 0, 1));
    }

    #[test]
    fn fifty_thousand_connections_use_three_addresses_round_robin() {
        let spread = SourceAddrs::plan(loopback(), 50_000, None)
            .unwrap()
            .unwrap();
        assert_eq!(spread.count(), 3);
        let octets: Vec<u8> = (0..6)
            .map(|i| spread.for_connection(i).octets()[3])
            .collect();
        assert_eq!(octets, [1, 2, 3, 1, 2, 3]);
        let mut per = [0usize; 3];
        for i in 0..50_000 {
            per[usize::from(spread.for_connection(i).octets()[3] - 1)] += 1;
        }
        assert!(per.iter().all(|&n| n <= PER_ADDRESS), "{per:?}");
    }

    #[test]
    fn a_requested_count_wins_and_is_bounded() {
        let spread = SourceAddrs::plan(loopback(), 10, Some(8)).unwrap().unwrap();
        assert_eq!(spread.for_connection(7), Ipv4Addr::new(127, 0, 0, 8));
        assert_eq!(spread.for_connection(8), Ipv4Addr::new(127, 0, 0, 1));
        assert!(SourceAddrs::plan(loopback(), 10, Some(0)).is_err());
        assert!(SourceAddrs::plan(loopback(), 10, Some(255)).is_err());
        assert!(SourceAddrs::plan(loopback(), 6_000_000, None).is_err());
    }

    #[test]
    fn non_loopback_targets_are_not_spread() {
        let remote = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(SourceAddrs::plan(remote, 50_000, None), Ok(None));
        assert!(SourceAddrs::plan(remote, 50_000, Some(2)).is_err());
        assert_eq!(
            SourceAddrs::plan("::1".parse().unwrap(), 10, None),
            Ok(None)
        );
    }
}
