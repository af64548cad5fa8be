//! Consumer-side partition assignors. The broker never looks inside a consumer group's
//! assignment: the member it elects leader runs the assignor the group agreed on (by its
//! protocol name) over every member's subscription and hands the result back in SyncGroup.
//! Java, librdkafka and Freshet consumers can share a group and any of them may be leader,
//! so these follow Apache Kafka's `RangeAssignor`, `RoundRobinAssignor` and
//! `CooperativeStickyAssignor` and are pure, deterministic functions of their input.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::client::TopicPartition;

/// One member's subscription as the leader decodes it from JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id the coordinator gave the member.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Topics the member subscribes to.
    pub topics: Vec<String>,
    /// Partitions the member owned in `generation` (consumer protocol v1+), for stickiness.
    pub owned: Vec<TopicPartition>,
    /// Generation of `owned` (-1 unknown), consumer protocol v2+.
    pub generation: i32,
    /// What a [`GroupAssignor`] put in the member's subscription (empty otherwise).
    pub user_data: bytes::Bytes,
}

/// One member's share, as a [`GroupAssignor`] hands it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupAssignment {
    /// The partitions the member consumes.
    pub partitions: Vec<TopicPartition>,
    /// Anything else the assignor tells the member (delivered to
    /// [`GroupAssignor::on_assignment`]).
    pub user_data: bytes::Bytes,
}

/// An assignor of its own, in place of the built-in ones: it adds user data to each
/// member's subscription, assigns from everyone's (as leader), and hears the assignment
/// with its user data. This is how Kafka Streams' `StreamsPartitionAssignor` plugs into the
/// consumer. Groups using one follow the eager protocol: every partition is revoked
/// before a rebalance.
pub trait GroupAssignor: Send + Sync + std::fmt::Debug {
    /// The protocol name it is offered under in JoinGroup.
    fn name(&self) -> &str;

    /// User data for this member's subscription, asked before each join.
    fn subscription_user_data(&self) -> bytes::Bytes;

    /// As leader: every member's share. `partitions` has the partition counts of the
    /// topics the members subscribe to (topics that do not exist are missing). A member
    /// left out of the result gets nothing.
    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, i32>,
    ) -> crate::client::Result<BTreeMap<String, GroupAssignment>>;

    /// This member's share for `generation`, before the consumer starts fetching it.
    fn on_assignment(&self, assignment: &GroupAssignment, generation: i32);
}

/// A partition assignment strategy, as `partition.assignment.strategy` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `RangeAssignor`: per topic, each member gets a contiguous range of partitions.
    Range,
    /// Kafka's `RoundRobinAssignor`: all partitions dealt one by one over all members.
    RoundRobin,
    /// Kafka's `CooperativeStickyAssignor`: balanced, keeps what members own, and never hands
    /// out a partition that its owner has not revoked yet.
    CooperativeSticky,
}

const ALL: [Assignor; 3] = [Assignor::Range, Assignor::RoundRobin, Assignor::CooperativeSticky];

impl Assignor {
    /// Kafka's protocol names: "range", "roundrobin", "cooperative-sticky".
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The assignor with protocol name `name`, if it is one of these.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether the assignor follows the cooperative (incremental) protocol.
    pub fn is_cooperative(self) -> bool {
        matches!(self, Assignor::CooperativeSticky)
    }

    /// Assigns `partitions` (topic -> partition count; topics missing here are unknown and get
    /// nothing) to `members`. Every member appears in the result (possibly with an empty list).
    /// Partitions within each list sorted.
    ///
    /// Member ids are expected to be unique; should one repeat, its first subscription counts.
    pub fn assign(
        self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let group = Group::new(members, partitions);
        let lists = match self {
            Assignor::Range => range(&group),
            Assignor::RoundRobin => round_robin(&group),
            Assignor::CooperativeSticky => cooperative_sticky(&group),
        };
        group
            .members
            .iter()
            .zip(lists)
            .map(|(m, mut list)| {
                list.sort();
                (m.member_id.clone(), list)
            })
            .collect()
    }
}

/// Kafka's `MemberInfo` order: static members first, by instance id, then the rest by member
/// id. Ranges and the round-robin deal start from the first, so this decides who gets the extras.
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    // Instance ids are unique in a healthy group; the member id keeps the order total anyway.
    .then_with(|| a.member_id.cmp(&b.member_id))
}

/// A topic that exists and that at least one member subscribes to.
#[derive(Debug)]
struct Topic {
    partitions: i32,
    /// Indexes into [`Group::members`], ascending, so in member order.
    subscribers: Vec<usize>,
}

/// The input, normalised: members in Kafka's order, subscriptions cut down to known topics.
#[derive(Debug)]
struct Group<'a> {
    members: Vec<&'a MemberSubscription>,
    /// Per member (same index), its subscribed topics that exist.
    subscriptions: Vec<BTreeSet<&'a str>>,
    topics: BTreeMap<&'a str, Topic>,
}

impl<'a> Group<'a> {
    fn new(members: &'a [MemberSubscription], partitions: &BTreeMap<String, i32>) -> Self {
        let mut seen = BTreeSet::new();
        let mut members: Vec<&MemberSubscription> =
            members.iter().filter(|m| seen.insert(m.member_id.as_str())).collect();
        members.sort_by(|a, b| member_order(a, b));
        let subscriptions: Vec<BTreeSet<&str>> = members
            .iter()
            .map(|m| m.topics.iter().map(String::as_str).filter(|t| partitions.contains_key(*t)).collect())
            .collect();
        let mut topics: BTreeMap<&str, Topic> = BTreeMap::new();
        for (i, subscribed) in subscriptions.iter().enumerate() {
            for &topic in subscribed {
                let count = partitions.get(topic).copied().unwrap_or(0).max(0);
                topics.entry(topic).or_insert(Topic { partitions: count, subscribers: Vec::new() }).subscribers.push(i);
            }
        }
        Self { members, subscriptions, topics }
    }

    /// Every partition of every subscribed topic, sorted by (topic, partition).
    fn partitions(&self) -> impl Iterator<Item = (&'a str, i32, &Topic)> + '_ {
        self.topics.iter().flat_map(|(&name, topic)| (0..topic.partitions).map(move |p| (name, p, topic)))
    }
}

/// Kafka's `RangeAssignor`: per topic, the subscribers in member order each take the next
/// `partitions / subscribers` partitions, and the first `partitions % subscribers` one more.
fn range(group: &Group<'_>) -> Vec<Vec<TopicPartition>> {
    let mut out = vec![Vec::new(); group.members.len()];
    for (&name, topic) in &group.topics {
        let ids: Vec<i32> = (0..topic.partitions).collect();
        // `subscribers` is never empty: a topic is only listed because someone subscribes.
        let per_member = ids.len() / topic.subscribers.len();
        let with_extra = ids.len() % topic.subscribers.len();
        let mut start = 0;
        for (i, &m) in topic.subscribers.iter().enumerate() {
            let end = start + per_member + usize::from(i < with_extra);
            out[m].extend(ids[start..end].iter().map(|&p| TopicPartition::new(name.to_owned(), p)));
            start = end;
        }
    }
    out
}

/// Kafka's `RoundRobinAssignor`: one cursor goes round the members in order; each partition
/// (sorted by topic, then number) goes to the next member at or after the cursor that
/// subscribes to its topic.
fn round_robin(group: &Group<'_>) -> Vec<Vec<TopicPartition>> {
    let n = group.members.len();
    let mut out = vec![Vec::new(); n];
    let mut cursor = 0;
    for (name, p, _) in group.partitions() {
        // Bounded search rather than Kafka's `while`: the topic has a subscriber, but a loop
        // that cannot spin is cheaper to trust than that invariant.
        let Some(m) = (0..n).map(|k| (cursor + k) % n).find(|&m| group.subscriptions[m].contains(name)) else {
            continue;
        };
        out[m].push(TopicPartition::new(name.to_owned(), p));
        cursor = (m + 1) % n;
    }
    out
}

/// For each partition some member claims to own, the claimants that count: those that claim
/// it in the highest generation among its claims. One such claimant keeps the partition; two
/// or more claiming it in the same generation (or all with generation -1, unknown) cannot all
/// be right, so none keeps it, yet each may still be consuming it until it learns otherwise.
/// An unknown generation (-1) ranks below every known one, as Kafka's `DEFAULT_GENERATION` does.
fn live_owners<'a>(members: &[&'a MemberSubscription]) -> BTreeMap<&'a TopicPartition, Vec<usize>> {
    let mut claims: BTreeMap<&TopicPartition, (i32, Vec<usize>)> = BTreeMap::new();
    for (i, member) in members.iter().enumerate() {
        for tp in &member.owned {
            let (generation, owners) = claims.entry(tp).or_insert((member.generation, Vec::new()));
            match member.generation.cmp(&*generation) {
                Ordering::Greater => (*generation, *owners) = (member.generation, vec![i]),
                // A member listing a partition twice is still one claimant.
                Ordering::Equal if owners.last() != Some(&i) => owners.push(i),
                Ordering::Equal | Ordering::Less => {}
            }
        }
    }
    claims.into_iter().map(|(tp, (_, owners))| (tp, owners)).collect()
}

/// Kafka's `CooperativeStickyAssignor` (over `AbstractStickyAssignor`).
///
/// 1. Each member keeps the partitions it owns without dispute, if still subscribed.
/// 2. The rest go, most constrained first (fewest subscribers), to the least-loaded subscriber.
/// 3. Single moves from heavier to lighter members even the loads out: members with identical
///    subscriptions end within one partition of each other, and in general no partition can
///    move to a subscriber holding two or more fewer. Freshly placed partitions move before
///    kept ones, so as little as possible changes hands.
/// 4. The cooperative rule: a partition that another member still owns is left out of this
///    round. Its owner sees it missing from its own assignment and revokes it; the follow-up
///    rebalance then finds it unowned and hands it over. Only moving partitions ever stop.
fn cooperative_sticky(group: &Group<'_>) -> Vec<Vec<TopicPartition>> {
    let n = group.members.len();
    let owners = live_owners(&group.members);
    let mut assigned: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); n];
    let mut kept: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); n];
    let mut unowned = Vec::new();
    for (name, p, topic) in group.partitions() {
        let tp = TopicPartition::new(name.to_owned(), p);
        match owners.get(&tp).map(Vec::as_slice) {
            Some(&[owner]) if group.subscriptions[owner].contains(name) => {
                kept[owner].insert(tp.clone());
                assigned[owner].insert(tp);
            }
            _ => unowned.push((topic.subscribers.len(), tp, &topic.subscribers)),
        }
    }
    // Placing the partitions with the fewest candidates first leaves the flexible ones to
    // even out the loads around them (Kafka sorts by the number of potential consumers too).
    unowned.sort();
    for (_, tp, subscribers) in unowned {
        if let Some(m) = least_loaded(&assigned, subscribers, None) {
            assigned[m].insert(tp);
        }
    }
    while let Some((from, tp, to)) = next_move(&assigned, &kept, &group.topics) {
        assigned[from].remove(&tp);
        assigned[to].insert(tp);
    }
    for (m, partitions) in assigned.iter_mut().enumerate() {
        partitions.retain(|tp| owners.get(tp).is_none_or(|claimants| claimants.iter().all(|&c| c == m)));
    }
    assigned.into_iter().map(|partitions| partitions.into_iter().collect()).collect()
}

/// The member among `candidates` (except `except`) with the fewest partitions, the first in
/// member order on a tie.
fn least_loaded(assigned: &[BTreeSet<TopicPartition>], candidates: &[usize], except: Option<usize>) -> Option<usize> {
    candidates.iter().copied().filter(|&m| Some(m) != except).min_by_key(|&m| (assigned[m].len(), m))
}

/// The next move that evens out the loads: a partition from the heaviest member that has one
/// to give, to its least-loaded subscriber, provided that one holds at least two fewer. Each
/// move lowers the sum of squared loads, so balancing ends.
fn next_move(
    assigned: &[BTreeSet<TopicPartition>],
    kept: &[BTreeSet<TopicPartition>],
    topics: &BTreeMap<&str, Topic>,
) -> Option<(usize, TopicPartition, usize)> {
    let lightest = assigned.iter().map(BTreeSet::len).min()?;
    let mut donors: Vec<usize> = (0..assigned.len()).collect();
    donors.sort_by_key(|&m| (Reverse(assigned[m].len()), m));
    for from in donors {
        let load = assigned[from].len();
        if load < lightest + 2 {
            // Neither this member nor any lighter one can give to anybody.
            break;
        }
        // Fresh partitions first (moving them revokes nothing), then kept ones from the top
        // down, so a member keeps its lowest-numbered partitions.
        let fresh = assigned[from].iter().filter(|tp| !kept[from].contains(*tp));
        let owned = assigned[from].iter().rev().filter(|tp| kept[from].contains(*tp));
        let mut receivers: BTreeMap<&str, Option<usize>> = BTreeMap::new();
        for tp in fresh.chain(owned) {
            let to = *receivers.entry(tp.topic.as_str()).or_insert_with(|| {
                topics.get(tp.topic.as_str()).and_then(|topic| least_loaded(assigned, &topic.subscribers, Some(from)))
            });
            if let Some(to) = to
                && assigned[to].len() + 2 <= load
            {
                return Some((from, tp.clone(), to));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_owned(),
            group_instance_id: None,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            owned: Vec::new(),
            generation: -1,
            user_data: bytes::Bytes::new(),
        }
    }

    fn owning(id: &str, topics: &[&str], generation: i32, owned: &[(&str, i32)]) -> MemberSubscription {
        MemberSubscription { owned: tps(owned), generation, ..member(id, topics) }
    }

    fn tps(list: &[(&str, i32)]) -> Vec<TopicPartition> {
        list.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect()
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    fn expect(list: &[(&str, &[(&str, i32)])]) -> BTreeMap<String, Vec<TopicPartition>> {
        list.iter().map(|(m, assigned)| ((*m).to_owned(), tps(assigned))).collect()
    }

    /// The next rebalance with the same members: each now owns what it was just given, in a
    /// newer generation.
    fn next_round(
        members: &[MemberSubscription],
        result: &BTreeMap<String, Vec<TopicPartition>>,
        generation: i32,
    ) -> Vec<MemberSubscription> {
        members
            .iter()
            .map(|m| MemberSubscription { owned: result[&m.member_id].clone(), generation, ..m.clone() })
            .collect()
    }

    /// Every partition of a subscribed, existing topic, each once.
    fn assignable(members: &[MemberSubscription], partitions: &BTreeMap<String, i32>) -> BTreeSet<TopicPartition> {
        let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| &m.topics).collect();
        partitions
            .iter()
            .filter(|(t, _)| subscribed.contains(t))
            .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t.clone(), p)))
            .collect()
    }

    /// What holds for every assignor: all members listed, lists sorted, each partition exists,
    /// is subscribed to by its member and goes to at most one member; with `complete`, every
    /// assignable partition goes to exactly one.
    fn check(
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, i32>,
        result: &BTreeMap<String, Vec<TopicPartition>>,
        complete: bool,
    ) {
        let ids: BTreeSet<&String> = members.iter().map(|m| &m.member_id).collect();
        assert_eq!(result.keys().collect::<BTreeSet<_>>(), ids);
        let mut seen = BTreeSet::new();
        for (id, list) in result {
            assert!(list.is_sorted(), "{id}: {list:?} not sorted");
            let member = members.iter().find(|m| &m.member_id == id).unwrap();
            for tp in list {
                assert!(
                    tp.partition >= 0 && tp.partition < partitions.get(&tp.topic).copied().unwrap_or(0),
                    "{id} got {tp:?}"
                );
                assert!(member.topics.contains(&tp.topic), "{id} got {tp:?} outside its subscription");
                assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
            }
        }
        if complete {
            assert_eq!(seen, assignable(members, partitions));
        }
    }

    fn loads(result: &BTreeMap<String, Vec<TopicPartition>>) -> Vec<usize> {
        result.values().map(Vec::len).collect()
    }

    #[test]
    fn names_round_trip() {
        for a in ALL {
            assert_eq!(Assignor::from_name(a.name()), Some(a));
        }
        assert_eq!(Assignor::from_name("sticky"), None);
        assert!(Assignor::CooperativeSticky.is_cooperative());
        assert!(!Assignor::Range.is_cooperative() && !Assignor::RoundRobin.is_cooperative());
    }

    #[test]
    fn range_matches_kafkas_documented_example() {
        let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let partitions = counts(&[("t0", 3), ("t1", 3)]);
        let result = Assignor::Range.assign(&members, &partitions);
        check(&members, &partitions, &result, true);
        assert_eq!(
            result,
            expect(&[("C0", &[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]), ("C1", &[("t0", 2), ("t1", 2)])])
        );
    }

    #[test]
    fn range_gives_extras_to_the_first_members_static_ones_first() {
        // Kafka's MemberInfo order: instance ids first ("a" < "z"), then member ids.
        let mut c = member("c", &["t"]);
        c.group_instance_id = Some("z".into());
        let mut d = member("d", &["t"]);
        d.group_instance_id = Some("a".into());
        let members = [member("a", &["t"]), member("b", &["t"]), c, d];
        let partitions = counts(&[("t", 6)]);
        let result = Assignor::Range.assign(&members, &partitions);
        check(&members, &partitions, &result, true);
        assert_eq!(
            result,
            expect(&[
                ("d", &[("t", 0), ("t", 1)]),
                ("c", &[("t", 2), ("t", 3)]),
                ("a", &[("t", 4)]),
                ("b", &[("t", 5)])
            ])
        );
    }

    #[test]
    fn round_robin_matches_kafkas_documented_examples() {
        let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let partitions = counts(&[("t0", 3), ("t1", 3)]);
        let result = Assignor::RoundRobin.assign(&members, &partitions);
        check(&members, &partitions, &result, true);
        assert_eq!(
            result,
            expect(&[("C0", &[("t0", 0), ("t0", 2), ("t1", 1)]), ("C1", &[("t0", 1), ("t1", 0), ("t1", 2)])])
        );

        // Different subscriptions: members not subscribed to a partition's topic are skipped.
        let members = [member("C0", &["t0"]), member("C1", &["t0", "t1"]), member("C2", &["t0", "t1", "t2"])];
        let partitions = counts(&[("t0", 1), ("t1", 2), ("t2", 3)]);
        let result = Assignor::RoundRobin.assign(&members, &partitions);
        check(&members, &partitions, &result, true);
        assert_eq!(
            result,
            expect(&[
                ("C0", &[("t0", 0)]),
                ("C1", &[("t1", 0)]),
                ("C2", &[("t1", 1), ("t2", 0), ("t2", 1), ("t2", 2)]),
            ])
        );
    }

    #[test]
    fn eager_assignors_ignore_unknown_topics_and_leave_idle_members_empty() {
        let members = [member("a", &["t", "gone"]), member("b", &["gone"]), member("c", &["t"])];
        let partitions = counts(&[("t", 3), ("other", 4)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let result = assignor.assign(&members, &partitions);
            check(&members, &partitions, &result, true);
            assert_eq!(result["b"], Vec::<TopicPartition>::new(), "{assignor:?}");
            assert_eq!(loads(&result), [2, 0, 1], "{assignor:?}");
        }
    }

    #[test]
    fn sticky_fresh_group_is_balanced() {
        let members = [member("c0", &["t"]), member("c1", &["t"]), member("c2", &["t"])];
        let partitions = counts(&[("t", 6)]);
        let result = Assignor::CooperativeSticky.assign(&members, &partitions);
        check(&members, &partitions, &result, true);
        assert_eq!(loads(&result), [2, 2, 2]);
        // The same group listed in another order gets the same answer.
        let reversed: Vec<_> = members.iter().rev().cloned().collect();
        assert_eq!(Assignor::CooperativeSticky.assign(&reversed, &partitions), result);
    }

    #[test]
    fn sticky_join_moves_only_what_it_must_in_two_rounds() {
        let partitions = counts(&[("t", 6)]);
        let before = [
            owning("c0", &["t"], 1, &[("t", 0), ("t", 1), ("t", 2)]),
            owning("c1", &["t"], 1, &[("t", 3), ("t", 4), ("t", 5)]),
            member("c2", &["t"]),
        ];
        let first = Assignor::CooperativeSticky.assign(&before, &partitions);
        check(&before, &partitions, &first, false);
        // Each old member keeps two, revokes one; the newcomer waits for the revocations.
        assert_eq!(first, expect(&[("c0", &[("t", 0), ("t", 1)]), ("c1", &[("t", 3), ("t", 4)]), ("c2", &[])]));

        let after = next_round(&before, &first, 2);
        let second = Assignor::CooperativeSticky.assign(&after, &partitions);
        check(&after, &partitions, &second, true);
        assert_eq!(
            second,
            expect(&[("c0", &[("t", 0), ("t", 1)]), ("c1", &[("t", 3), ("t", 4)]), ("c2", &[("t", 2), ("t", 5)])])
        );
        // Settled: another rebalance changes nothing.
        assert_eq!(Assignor::CooperativeSticky.assign(&next_round(&after, &second, 3), &partitions), second);
    }

    #[test]
    fn sticky_leave_spreads_the_orphans_and_moves_nothing_else() {
        let partitions = counts(&[("t", 6)]);
        let survivors = [
            owning("c0", &["t"], 4, &[("t", 0), ("t", 1)]),
            owning("c1", &["t"], 4, &[("t", 2), ("t", 3)]),
            // c2 owned t-4 and t-5 and is gone.
        ];
        let result = Assignor::CooperativeSticky.assign(&survivors, &partitions);
        check(&survivors, &partitions, &result, true);
        for m in &survivors {
            assert!(m.owned.iter().all(|tp| result[&m.member_id].contains(tp)), "{} lost a partition", m.member_id);
        }
        assert_eq!(loads(&result), [3, 3]);
    }

    #[test]
    fn sticky_resolves_conflicting_claims_by_generation() {
        let partitions = counts(&[("t", 4)]);
        // c1's claim on t-1 is from an older generation: c0 keeps it, c1 keeps its uncontested t-2.
        let members = [owning("c0", &["t"], 5, &[("t", 0), ("t", 1)]), owning("c1", &["t"], 4, &[("t", 1), ("t", 2)])];
        let result = Assignor::CooperativeSticky.assign(&members, &partitions);
        check(&members, &partitions, &result, true);
        assert_eq!(result, expect(&[("c0", &[("t", 0), ("t", 1)]), ("c1", &[("t", 2), ("t", 3)])]));

        // Same generation, or both unknown: neither claim wins. Whoever it is placed with must
        // wait until the other claimant has revoked it, so this round nobody gets it ...
        for generation in [5, -1] {
            let members = [
                owning("c0", &["t"], generation, &[("t", 0), ("t", 1)]),
                owning("c1", &["t"], generation, &[("t", 1), ("t", 2)]),
            ];
            let first = Assignor::CooperativeSticky.assign(&members, &partitions);
            check(&members, &partitions, &first, false);
            assert_eq!(first, expect(&[("c0", &[("t", 0)]), ("c1", &[("t", 2), ("t", 3)])]), "generation {generation}");
            // ... and the next round places it.
            let next = next_round(&members, &first, 6);
            let second = Assignor::CooperativeSticky.assign(&next, &partitions);
            check(&next, &partitions, &second, true);
            assert_eq!(second, expect(&[("c0", &[("t", 0), ("t", 1)]), ("c1", &[("t", 2), ("t", 3)])]));
        }
    }

    #[test]
    fn sticky_unsubscribed_topic_is_taken_away() {
        let partitions = counts(&[("t0", 2), ("t1", 2)]);
        let members =
            [owning("a", &["t0"], 3, &[("t0", 0), ("t1", 0)]), owning("b", &["t0", "t1"], 3, &[("t0", 1), ("t1", 1)])];
        let first = Assignor::CooperativeSticky.assign(&members, &partitions);
        check(&members, &partitions, &first, false);
        // b is due t1-0 and a is due t0-1, but each is still owned by the other member.
        assert_eq!(first, expect(&[("a", &[("t0", 0)]), ("b", &[("t1", 1)])]));
        let next = next_round(&members, &first, 4);
        let second = Assignor::CooperativeSticky.assign(&next, &partitions);
        check(&next, &partitions, &second, true);
        assert_eq!(second, expect(&[("a", &[("t0", 0), ("t0", 1)]), ("b", &[("t1", 0), ("t1", 1)])]));
    }

    #[test]
    fn sticky_ignores_unknown_topics_and_vanished_partitions() {
        let partitions = counts(&[("t", 2)]);
        let members = [
            owning("a", &["t", "gone"], 2, &[("gone", 0), ("t", 0), ("t", 7)]),
            owning("b", &["t", "gone"], 2, &[("gone", 1)]),
        ];
        let result = Assignor::CooperativeSticky.assign(&members, &partitions);
        check(&members, &partitions, &result, true);
        assert_eq!(result, expect(&[("a", &[("t", 0)]), ("b", &[("t", 1)])]));
    }

    #[test]
    fn empty_groups_and_empty_topics() {
        let partitions = counts(&[("t", 0)]);
        for assignor in ALL {
            assert!(assignor.assign(&[], &partitions).is_empty());
            let members = [member("a", &["t"])];
            assert_eq!(assignor.assign(&members, &partitions), expect(&[("a", &[])]));
        }
    }

    const TOPICS: [&str; 4] = ["t0", "t1", "t2", "unknown"];

    fn arb_member(i: usize) -> impl Strategy<Value = MemberSubscription> {
        (proptest::option::of(0..3u8), 1..16u8, proptest::collection::vec((0..TOPICS.len(), 0..8i32), 0..8), -1..3i32)
            .prop_map(move |(instance, mask, owned, generation)| MemberSubscription {
                member_id: format!("m{i}"),
                group_instance_id: instance.map(|x| format!("i{x}")),
                topics: TOPICS
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| mask & (1 << b) != 0)
                    .map(|(_, t)| (*t).into())
                    .collect(),
                owned: owned.into_iter().map(|(t, p)| TopicPartition::new(TOPICS[t], p)).collect(),
                generation,
                user_data: bytes::Bytes::new(),
            })
    }

    fn arb_group() -> impl Strategy<Value = (Vec<MemberSubscription>, BTreeMap<String, i32>)> {
        let members = (0..7usize).prop_flat_map(|n| (0..n).map(arb_member).collect::<Vec<_>>());
        let partitions = proptest::collection::vec(proptest::option::of(0..7i32), 3).prop_map(|counts| {
            TOPICS.iter().zip(counts).filter_map(|(t, n)| Some(((*t).to_owned(), n?))).collect::<BTreeMap<_, _>>()
        });
        (members, partitions)
    }

    proptest! {
        #[test]
        fn eager_assignors_assign_everything_exactly_once((members, partitions) in arb_group()) {
            for assignor in [Assignor::Range, Assignor::RoundRobin] {
                let result = assignor.assign(&members, &partitions);
                check(&members, &partitions, &result, true);
                prop_assert_eq!(assignor.assign(&members, &partitions), result);
            }
        }

        #[test]
        fn sticky_never_hands_out_an_owned_partition_and_settles((members, partitions) in arb_group()) {
            let sticky = Assignor::CooperativeSticky;
            let mut members = members;
            let mut result = sticky.assign(&members, &partitions);
            let mut settled = false;
            for generation in 10..16 {
                check(&members, &partitions, &result, false);
                prop_assert_eq!(&sticky.assign(&members, &partitions), &result);
                // Given to m means no other member claims it, unless in an older generation
                // than m's own claim.
                for (id, list) in &result {
                    let mine = members.iter().find(|m| &m.member_id == id).unwrap();
                    for tp in list {
                        for other in members.iter().filter(|o| &o.member_id != id && o.owned.contains(tp)) {
                            prop_assert!(
                                mine.owned.contains(tp) && mine.generation > other.generation,
                                "{} got {:?} that {} owns", id, tp, other.member_id
                            );
                        }
                    }
                }
                let next = next_round(&members, &result, generation);
                let again = sticky.assign(&next, &partitions);
                let complete = result.values().map(Vec::len).sum::<usize>() == assignable(&members, &partitions).len();
                if again == result && complete {
                    settled = true;
                    break;
                }
                (members, result) = (next, again);
            }
            prop_assert!(settled, "no stable assignment after several rounds");
            check(&members, &partitions, &result, true);
            // Settled means balanced: no partition could go to a subscriber with two fewer.
            for (id, list) in &result {
                for tp in list {
                    for other in members.iter().filter(|o| o.topics.contains(&tp.topic)) {
                        prop_assert!(
                            result[&other.member_id].len() + 2 > list.len(),
                            "{} could take {:?} from {}", other.member_id, tp, id
                        );
                    }
                }
            }
        }
    }
}
