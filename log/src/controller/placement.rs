//! Where a new partition's replicas go: round-robin over the brokers that may lead, with
//! a shift between rounds so that followers spread too (Kafka's rack-unaware assignment),
//! over a broker list that alternates racks when `broker.rack` is set, so that consecutive
//! replicas of a partition land in different racks.

use std::collections::BTreeMap;

/// Replica lists for `partitions` new partitions of `replication_factor` replicas each.
/// `brokers` are (id, rack), eligible ones only; `start` varies the first leader between
/// topics. The caller checks that there are enough brokers.
pub(crate) fn place_replicas(
    brokers: &[(i32, Option<String>)],
    partitions: i32,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    let list = rack_alternated(brokers);
    let n = list.len();
    if n == 0 || replication_factor == 0 || replication_factor > n {
        return Vec::new();
    }
    let rack_of = |id: i32| brokers.iter().find(|(b, _)| *b == id).and_then(|(_, r)| r.as_deref());
    let rack_count = list.iter().map(|id| rack_of(*id)).collect::<std::collections::BTreeSet<_>>().len();
    let mut shift = start % n;
    let mut placed = Vec::with_capacity(partitions.max(0) as usize);
    for p in 0..partitions.max(0) as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (start + p) % n;
        let mut replicas = vec![list[first]];
        for j in 0..replication_factor - 1 {
            let from = if n > 1 { first + 1 + (shift + j) % (n - 1) } else { first };
            // Walk on from the shifted position to the first broker not chosen yet, in a
            // rack without a replica while some rack still has none.
            let racks_used: Vec<_> = replicas.iter().map(|r| rack_of(*r)).collect();
            let fresh_rack_left = racks_used.len() < rack_count;
            let pick = (0..n)
                .map(|k| list[(from + k) % n])
                .filter(|id| !replicas.contains(id))
                .find(|id| !fresh_rack_left || !racks_used.contains(&rack_of(*id)))
                .or_else(|| (0..n).map(|k| list[(from + k) % n]).find(|id| !replicas.contains(id)));
            if let Some(id) = pick {
                replicas.push(id);
            }
        }
        placed.push(replicas);
    }
    placed
}

/// Brokers sorted by id, interleaved by rack: rack A's first, rack B's first, ..., rack
/// A's second. Without racks, just sorted by id.
fn rack_alternated(brokers: &[(i32, Option<String>)]) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.as_deref()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut list = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(i) {
                list.push(*id);
            }
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn brokers(racks: &[(i32, Option<&str>)]) -> Vec<(i32, Option<String>)> {
        racks.iter().map(|(id, r)| (*id, r.map(str::to_owned))).collect()
    }

    #[test]
    fn leaders_and_followers_spread_evenly() {
        let placed = place_replicas(&brokers(&[(1, None), (2, None), (3, None)]), 6, 3, 0);
        for replicas in &placed {
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3, "{placed:?}");
        }
        let mut leaders = [0; 4];
        for r in &placed {
            leaders[r[0] as usize] += 1;
        }
        assert_eq!(leaders[1..], [2, 2, 2]);
    }

    #[test]
    fn consecutive_replicas_land_in_different_racks() {
        let set = brokers(&[(1, Some("a")), (2, Some("a")), (3, Some("b")), (4, Some("b"))]);
        let rack = |id: i32| if id <= 2 { "a" } else { "b" };
        for replicas in place_replicas(&set, 8, 2, 1) {
            assert_ne!(rack(replicas[0]), rack(replicas[1]));
        }
    }

    #[test]
    fn too_few_brokers_place_nothing() {
        assert!(place_replicas(&brokers(&[(1, None)]), 1, 2, 0).is_empty());
    }
}
