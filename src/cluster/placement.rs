//! Which node should drive what: rendezvous (highest random weight)
//! hashing of a key over the live nodes.
//!
//! Every node computes the same answer from the same list of live nodes,
//! without talking to the others, and when a node joins or leaves only the
//! keys it wins or held move (about 1/n of them), not every key.

use sha2::{Digest, Sha256};

/// The weight of `node` for `key`: the first 8 bytes of
/// SHA-256(key NUL node). A cryptographic hash rather than `std`'s
/// `DefaultHasher`, whose output may change between Rust releases: nodes
/// built by different compilers during a rolling upgrade must agree.
fn weight(key: &str, node: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0]);
    hasher.update(node.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// The node among `live` that should hold `key`; `None` when no node is
/// live. Ties (practically impossible) go to the smaller node id.
pub fn owner<'a>(key: &str, live: &'a [String]) -> Option<&'a str> {
    live.iter()
        .map(|node| (weight(key, node), node))
        .max_by(|(wa, na), (wb, nb)| wa.cmp(wb).then(nb.cmp(na)))
        .map(|(_, node)| node.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_node_computes_the_same_owner_whatever_the_order() {
        let a = nodes(&["a", "b", "c"]);
        let b = nodes(&["c", "a", "b"]);
        for i in 0..100 {
            let key = format!("instance-{i}");
            assert_eq!(owner(&key, &a), owner(&key, &b));
        }
        assert_eq!(owner("x", &[]), None);
    }

    #[test]
    fn keys_spread_over_nodes_and_only_a_leaving_nodes_keys_move() {
        let three = nodes(&["a", "b", "c"]);
        let two = nodes(&["a", "b"]);
        let mut counts = std::collections::HashMap::new();
        for i in 0..3000 {
            let key = format!("instance-{i}");
            let before = owner(&key, &three).expect("an owner");
            *counts.entry(before).or_insert(0) += 1;
            let after = owner(&key, &two).expect("an owner");
            if before != "c" {
                assert_eq!(before, after, "{key} moved though its node stayed");
            }
        }
        for node in ["a", "b", "c"] {
            let n = counts[node];
            assert!((800..1200).contains(&n), "{node} got {n} of 3000");
        }
    }
}
