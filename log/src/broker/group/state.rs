//! One consumer group's state as the coordinator sees it: its members, its generation, the
//! protocol it agreed on, and its committed offsets. Transitions live in
//! [`super::coordinator`]; this file holds the nouns and the small questions asked of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::RequestId;
use super::records::{OffsetValue, StoredMember, subscribed_topics};

/// Kafka's group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for the members to (re)join.
    PreparingRebalance,
    /// The join is done; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A group member.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// Protocol names with the member's metadata for each, in its order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat_ms: i64,
    /// The JoinGroup request waiting for the rebalance to complete.
    pub awaiting_join: Option<RequestId>,
    /// The SyncGroup request waiting for the leader's assignment.
    pub awaiting_sync: Option<RequestId>,
}

impl Member {
    /// The member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    /// Whether it sends the same protocols with the same metadata.
    pub fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// A member waiting on a rebalance is kept alive without heartbeats, as in Kafka.
    pub fn session_deadline_ms(&self) -> Option<i64> {
        (self.awaiting_join.is_none() && self.awaiting_sync.is_none())
            .then(|| self.last_heartbeat_ms + i64::from(self.session_timeout_ms))
    }
}

/// The initial rebalance delay (`group.initial.rebalance.delay.ms`): a new group waits for
/// more members before its first rebalance, so that a fleet starting together rebalances
/// once rather than once per member.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitialDelay {
    pub deadline_ms: i64,
    /// Time left of the rebalance timeout for further extensions.
    pub remaining_ms: i64,
    pub new_member_added: bool,
}

/// A group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub state_since_ms: i64,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// Ordered, so that leader choice and responses are deterministic.
    pub members: BTreeMap<String, Member>,
    /// `group.instance.id` → member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire unless
    /// the member joins with them.
    pub pending_members: HashMap<String, i64>,
    /// PreparingRebalance: when the join completes whoever has rejoined.
    pub join_deadline_ms: Option<i64>,
    pub initial_delay: Option<InitialDelay>,
    /// Members that have not sent SyncGroup since the join completed, and the time they
    /// must have done so.
    pub pending_sync: BTreeSet<String>,
    pub sync_deadline_ms: Option<i64>,
    /// The generation whose assignment is written but not yet on every in-sync replica:
    /// SyncGroups that arrive meanwhile wait for it too.
    pub unstored_assignment: Option<i32>,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            state_since_ms: now_ms,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_deadline_ms: None,
            initial_delay: None,
            pending_sync: BTreeSet::new(),
            sync_deadline_ms: None,
            unstored_assignment: None,
            offsets: BTreeMap::new(),
        }
    }

    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    /// Whether every member has rejoined and no member id handed out is still unused.
    pub fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// The longest rebalance timeout among the members.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else { return Vec::new() };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    /// Whether a joining member's protocols fit this group: same protocol type, and at
    /// least one protocol in common with every current member.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    /// Kafka's vote: each member votes for its most preferred protocol among those every
    /// member supports; the most votes win, ties going to the earlier candidate.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m.protocols.iter().find_map(|(n, _)| candidates.iter().position(|c| c == n)) {
                votes[i] += 1;
            }
        }
        let best = votes.iter().enumerate().max_by(|(ia, a), (ib, b)| a.cmp(b).then(ib.cmp(ia)))?.0;
        candidates.get(best).cloned()
    }

    /// Topics the members of a consumer-protocol group subscribe to; `None` if the group
    /// does not use the consumer protocol (its subscriptions are opaque then).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(subscribed_topics(&m.metadata(protocol)).ok()?);
        }
        Some(topics)
    }

    pub fn stored_members(&self) -> Vec<StoredMember> {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| StoredMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.metadata(protocol),
                assignment: m.assignment.clone(),
            })
            .collect()
    }
}
