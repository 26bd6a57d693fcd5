//! Pools: one name that stands for several instances, so a text sent to it
//! goes out through whichever member the strategy picks when it is sent.
//!
//! A pool's name follows the instance-name rules and shares their namespace
//! (no pool may be named like an instance, nor the other way round). This
//! module holds the parsed definition ([`PoolSpec`]) and the pure part of
//! routing: which members a destination may go through
//! ([`PoolSpec::eligible`]) and which of them takes a message now
//! ([`PoolSpec::chooses`]); the store applies it inside its claim.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{InstanceName, Throttle};

/// Members one pool may have, at most.
pub const MAX_POOL_MEMBERS: usize = 64;
/// Prefix rules one pool may have, at most.
pub const MAX_POOL_RULES: usize = 64;
/// Digits a rule's prefix may have after its `+` (E.164's longest number).
pub const MAX_PREFIX_DIGITS: usize = 15;

/// How a pool shares its messages among its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Connected members take turns.
    RoundRobin,
    /// The first connected member in list order takes everything.
    Failover,
    /// The connected member with the fewest unsent messages takes the next.
    LeastLoaded,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::Failover => "failover",
            Strategy::LeastLoaded => "least_loaded",
        }
    }

    pub fn parse(raw: &str) -> Option<Strategy> {
        Some(match raw {
            "round_robin" => Strategy::RoundRobin,
            "failover" => Strategy::Failover,
            "least_loaded" => Strategy::LeastLoaded,
            _ => return None,
        })
    }
}

/// Destinations starting with `prefix` go through `members` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRule {
    /// `+` and 1 to 15 digits.
    pub prefix: String,
    pub members: Vec<InstanceName>,
}

/// What a pool is: as `pool/create` gives it and the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    pub strategy: Strategy,
    /// In order: failover tries them in it, round robin goes round it.
    pub members: Vec<InstanceName>,
    #[serde(default)]
    pub rules: Vec<PoolRule>,
    /// Limits on what all members together take from the pool.
    #[serde(default)]
    pub throttle: Throttle,
}

/// A pool request as it comes in, before it is checked.
#[derive(Debug, Default)]
pub struct PoolRequest {
    pub strategy: String,
    pub members: Vec<String>,
    pub rules: Vec<(String, Vec<String>)>,
    pub throttle: Throttle,
}

impl PoolSpec {
    /// Checks a request; the error names the field. Whether the members
    /// exist is the caller's to check (it knows the instances).
    pub fn parse(request: PoolRequest) -> Result<PoolSpec, String> {
        let strategy = Strategy::parse(&request.strategy).ok_or_else(|| {
            format!(
                "'strategy' is '{}'; it must be round_robin, failover or least_loaded",
                super::truncate(&request.strategy, 40)
            )
        })?;
        if request.members.is_empty() {
            return Err("'members' must name at least one instance".into());
        }
        if request.members.len() > MAX_POOL_MEMBERS {
            return Err(format!(
                "'members' has {} entries; a pool may have at most {MAX_POOL_MEMBERS}",
                request.members.len()
            ));
        }
        let members = names("members", &request.members)?;
        if request.rules.len() > MAX_POOL_RULES {
            return Err(format!(
                "'rules' has {} entries; a pool may have at most {MAX_POOL_RULES}",
                request.rules.len()
            ));
        }
        let mut rules = Vec::with_capacity(request.rules.len());
        let mut prefixes = HashSet::new();
        for (i, (prefix, rule_members)) in request.rules.into_iter().enumerate() {
            let digits = prefix.strip_prefix('+').unwrap_or("");
            if digits.is_empty()
                || digits.len() > MAX_PREFIX_DIGITS
                || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(format!(
                    "'rules[{i}].prefix' is '{}'; it must be '+' and 1 to {MAX_PREFIX_DIGITS} digits",
                    super::truncate(&prefix, 40)
                ));
            }
            if !prefixes.insert(prefix.clone()) {
                return Err(format!("'rules[{i}].prefix' '{prefix}' is given twice"));
            }
            let field = format!("rules[{i}].members");
            if rule_members.is_empty() {
                return Err(format!("'{field}' must name at least one member"));
            }
            if rule_members.len() > MAX_POOL_MEMBERS {
                return Err(format!(
                    "'{field}' has {} entries; at most {MAX_POOL_MEMBERS}",
                    rule_members.len()
                ));
            }
            let rule_members = names(&field, &rule_members)?;
            if let Some(stranger) = rule_members.iter().find(|m| !members.contains(m)) {
                return Err(format!(
                    "'{field}' names '{stranger}', which is not one of the pool's members"
                ));
            }
            rules.push(PoolRule {
                prefix,
                members: rule_members,
            });
        }
        request.throttle.check()?;
        if request.throttle.pause_min_ms.is_some() || request.throttle.pause_max_ms.is_some() {
            return Err(
                "'throttle.pauseMinMs' and 'throttle.pauseMaxMs' are per instance \
                 (settings/set); a pool's throttle takes perMinute, perDay and perMonth"
                    .into(),
            );
        }
        Ok(PoolSpec {
            strategy,
            members,
            rules,
            throttle: request.throttle,
        })
    }

    /// The members a text to `destination` may go through: those of the
    /// longest rule prefix it starts with, or every member when none does.
    pub fn eligible(&self, destination: &str) -> &[InstanceName] {
        self.rules
            .iter()
            .filter(|rule| destination.starts_with(&rule.prefix))
            .max_by_key(|rule| rule.prefix.len())
            .map_or(&self.members, |rule| &rule.members)
    }

    /// Whether `member` takes a message to `destination` now.
    ///
    /// `healthy` says which members are connected (the asking member is
    /// taken as connected: it is claiming); `cursor` is round robin's turn
    /// (a position in [`PoolSpec::members`]); `outstanding` counts each
    /// member's unsent messages for least loaded.
    pub fn chooses(
        &self,
        member: &InstanceName,
        destination: &str,
        healthy: &HashSet<InstanceName>,
        cursor: usize,
        outstanding: &HashMap<InstanceName, i64>,
    ) -> bool {
        let eligible = self.eligible(destination);
        if !eligible.contains(member) {
            return false;
        }
        let up = |m: &InstanceName| m == member || healthy.contains(m);
        match self.strategy {
            Strategy::Failover => eligible.iter().find(|m| up(m)) == Some(member),
            Strategy::RoundRobin => {
                let count = self.members.len();
                (0..count)
                    .map(|step| &self.members[(cursor + step) % count])
                    .find(|m| eligible.contains(m) && up(m))
                    == Some(member)
            }
            Strategy::LeastLoaded => {
                let load = |m: &InstanceName| outstanding.get(m).copied().unwrap_or(0);
                let mine = load(member);
                eligible
                    .iter()
                    .filter(|m| *m != member && up(m))
                    .all(|other| mine <= load(other))
            }
        }
    }

    /// Round robin's next turn once `member` took one.
    pub fn turn_after(&self, member: &InstanceName) -> usize {
        self.members
            .iter()
            .position(|m| m == member)
            .map_or(0, |i| (i + 1) % self.members.len().max(1))
    }

    /// The pool without `instance` (deleted): out of the members and of
    /// every rule; a rule left with no member goes.
    pub fn without(&self, instance: &InstanceName) -> PoolSpec {
        let mut spec = self.clone();
        spec.members.retain(|m| m != instance);
        for rule in &mut spec.rules {
            rule.members.retain(|m| m != instance);
        }
        spec.rules.retain(|rule| !rule.members.is_empty());
        spec
    }
}

/// Parses a list of member names, refusing duplicates; errors name `field`.
fn names(field: &str, raw: &[String]) -> Result<Vec<InstanceName>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, name) in raw.iter().enumerate() {
        let name = InstanceName::parse(name).map_err(|e| format!("'{field}[{i}]': {e}"))?;
        if !seen.insert(name.clone()) {
            return Err(format!("'{field}' names '{name}' twice"));
        }
        out.push(name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> InstanceName {
        InstanceName::parse(s).expect("name")
    }

    fn spec(strategy: &str, members: &[&str], rules: &[(&str, &[&str])]) -> PoolSpec {
        PoolSpec::parse(PoolRequest {
            strategy: strategy.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            rules: rules
                .iter()
                .map(|(p, m)| (p.to_string(), m.iter().map(|m| m.to_string()).collect()))
                .collect(),
            throttle: Throttle::default(),
        })
        .expect("valid")
    }

    #[test]
    fn the_longest_matching_prefix_decides() {
        let pool = spec(
            "failover",
            &["a", "b", "c"],
            &[("+44", &["a", "b"]), ("+447", &["c"])],
        );
        assert_eq!(pool.eligible("+441234"), &[n("a"), n("b")]);
        assert_eq!(pool.eligible("+447700900123"), &[n("c")]);
        assert_eq!(pool.eligible("+15551234567").len(), 3);
    }

    #[test]
    fn failover_takes_the_first_connected_member() {
        let pool = spec("failover", &["a", "b"], &[]);
        let none = HashSet::new();
        let loads = HashMap::new();
        assert!(!pool.chooses(&n("b"), "+1", &HashSet::from([n("a")]), 0, &loads));
        assert!(pool.chooses(&n("b"), "+1", &none, 0, &loads));
        assert!(pool.chooses(&n("a"), "+1", &none, 0, &loads));
    }

    #[test]
    fn round_robin_skips_a_member_that_is_down() {
        let pool = spec("round_robin", &["a", "b", "c"], &[]);
        let loads = HashMap::new();
        let up = HashSet::from([n("a"), n("c")]);
        // b's turn, but b is down: c takes it.
        assert!(pool.chooses(&n("c"), "+1", &up, 1, &loads));
        assert!(!pool.chooses(&n("a"), "+1", &up, 1, &loads));
        assert_eq!(pool.turn_after(&n("c")), 0);
    }

    #[test]
    fn least_loaded_waits_for_the_others_to_catch_up() {
        let pool = spec("least_loaded", &["a", "b"], &[]);
        let up = HashSet::from([n("a"), n("b")]);
        let loads = HashMap::from([(n("a"), 3), (n("b"), 1)]);
        assert!(!pool.chooses(&n("a"), "+1", &up, 0, &loads));
        assert!(pool.chooses(&n("b"), "+1", &up, 0, &loads));
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let bad = |strategy: &str, members: Vec<&str>, rules: Vec<(&str, Vec<&str>)>| {
            PoolSpec::parse(PoolRequest {
                strategy: strategy.into(),
                members: members.into_iter().map(String::from).collect(),
                rules: rules
                    .into_iter()
                    .map(|(p, m)| (p.into(), m.into_iter().map(String::from).collect()))
                    .collect(),
                throttle: Throttle::default(),
            })
            .expect_err("invalid")
        };
        assert!(bad("random", vec!["a"], vec![]).contains("'strategy'"));
        assert!(bad("failover", vec![], vec![]).contains("'members'"));
        assert!(bad("failover", vec!["a", "a"], vec![]).contains("twice"));
        assert!(bad("failover", vec!["a"], vec![("44", vec!["a"])]).contains("rules[0].prefix"));
        assert!(bad("failover", vec!["a"], vec![("+44", vec!["b"])]).contains("rules[0].members"));
        let many: Vec<String> = (0..=MAX_POOL_MEMBERS).map(|i| format!("m{i}")).collect();
        assert!(bad(
            "failover",
            many.iter().map(String::as_str).collect(),
            vec![]
        )
        .contains("at most 64"));
    }
}
