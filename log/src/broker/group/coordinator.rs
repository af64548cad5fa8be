//! The group coordinator as a state machine without I/O.
//!
//! Every method takes the current time and returns what should happen: an immediate answer,
//! or [`Output`]s collected in an outbox (JoinGroup and SyncGroup answers that were waiting
//! on other members, and records to append to `__consumer_offsets`). The tokio layer in
//! [`super::GroupService`] registers a responder per waiting request, appends the records
//! and forwards the answers; [`GroupCoordinator::tick`] drives the timeouts. Tests replay
//! event sequences against it with a hand-moved clock.
//!
//! The rebalance protocol follows Kafka's classic group coordinator: members join
//! (PreparingRebalance), the join completes when every known member has rejoined or the
//! rebalance timeout passes, the leader computes the assignment and sends it in SyncGroup
//! (CompletingRebalance), and the group is Stable until a member joins, leaves, changes its
//! subscription or misses its session timeout.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::RequestId;
use super::records::{CoordinatorKey, GroupValue, OffsetValue};
use super::state::{Group, GroupState, InitialDelay, Member};
use crate::codes;

/// A record for `__consumer_offsets`: key bytes and value bytes (`None`: a tombstone).
pub type CoordinatorRecord = (Vec<u8>, Option<Vec<u8>>);

/// The longest group id accepted, in bytes.
pub const MAX_GROUP_ID_BYTES: usize = 255;

/// The coordinator's settings, under Kafka's names.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `offsets.topic.num.partitions`.
    pub offsets_partitions: i32,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`.
    pub max_group_size: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub max_metadata_bytes: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            offsets_partitions: 50,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_group_size: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offsets_retention_check_interval_ms: 600_000,
            max_metadata_bytes: 4_096,
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (`max.poll.interval.ms` for consumers).
    pub rebalance_timeout_ms: i32,
    /// `consumer` for consumers, `connect` for Connect workers.
    pub protocol_type: String,
    /// Protocols (assignors) with the member's metadata for each.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member first gets MEMBER_ID_REQUIRED and a member id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814): a leader can be told to keep the current assignment.
    pub supports_skip_assignment: bool,
}

/// A member listed in the leader's JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinResponse {
    /// Error code.
    pub error: i16,
    /// The new generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// Every member, for the leader only.
    pub members: Vec<JoinedMember>,
    /// KIP-814: the leader rejoined a stable group and keeps the current assignment.
    pub skip_assignment: bool,
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Group id.
    pub group_id: String,
    /// Generation the member joined.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// v5: protocol type, checked against the group's.
    pub protocol_type: Option<String>,
    /// v5: protocol name, checked against the group's.
    pub protocol: Option<String>,
    /// The leader's assignment for every member.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncResponse {
    /// Error code.
    pub error: i16,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol.
    pub protocol: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// An offset to commit.
#[derive(Debug, Clone)]
pub struct CommitOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch, or -1.
    pub leader_epoch: i32,
    /// Metadata string.
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// Group id.
    pub group_id: String,
    /// Generation, or -1 for a commit outside group management (tools, `assign` users).
    pub generation: i32,
    /// Member id, empty outside group management.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// The offsets.
    pub offsets: Vec<CommitOffset>,
}

/// A validated commit, to be applied once its records are appended.
#[derive(Debug, Clone)]
pub struct PendingCommit {
    group_id: String,
    /// The `__consumer_offsets` partition the records go to.
    pub partition: i32,
    /// Records to append: key and value bytes.
    pub records: Vec<CoordinatorRecord>,
    accepted: Vec<(String, i32, OffsetValue)>,
    /// Per-partition result codes; accepted ones are `NONE`.
    pub results: Vec<(String, i32, i16)>,
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the chosen protocol (Stable groups only).
    pub metadata: Bytes,
    /// Assignment (Stable groups only).
    pub assignment: Bytes,
}

/// DescribeGroups for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// State name; `Dead` for a group that does not exist.
    pub state: &'static str,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol (Stable groups only).
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub group_id: String,
    /// Protocol type (empty for groups that only hold offsets).
    pub protocol_type: String,
    /// State name.
    pub state: &'static str,
}

/// What the coordinator asks its I/O layer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Answer a waiting JoinGroup.
    Join(RequestId, JoinResponse),
    /// Answer a waiting SyncGroup.
    Sync(RequestId, SyncResponse),
    /// Append records (key, value; `None` is a tombstone) to a `__consumer_offsets` partition,
    /// then send `then`. If the append fails, `then` must not be sent: the I/O layer hands
    /// it to [`GroupCoordinator::write_failed`] instead.
    Append {
        /// The partition.
        partition: i32,
        /// The records.
        records: Vec<CoordinatorRecord>,
        /// The group whose metadata the records hold, if they are one group's.
        group: Option<String>,
        /// That group's generation when they were built (-1 without a group): a failure
        /// reported later rebalances the group only if it has not moved on since.
        generation: i32,
        /// Answers that may only leave once the records are written.
        then: Vec<Output>,
    },
}

/// A deletion of committed offsets (and perhaps the whole group) whose tombstones must be
/// written before it is applied with [`GroupCoordinator::complete_deletion`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDeletion {
    group_id: String,
    /// The `__consumer_offsets` partition the tombstones go to.
    pub partition: i32,
    /// The tombstones.
    pub records: Vec<CoordinatorRecord>,
    offsets: Vec<(String, i32)>,
    whole_group: bool,
}

/// Load state of one `__consumer_offsets` partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading,
    Ready,
    /// Another broker leads this partition of `__consumer_offsets`: it coordinates.
    NotCoordinator,
}

/// The group coordinator.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    groups: HashMap<String, Group>,
    partitions: Vec<Load>,
    /// Distinguishes member ids across broker restarts.
    incarnation: u64,
    member_seq: u64,
    next_retention_check_ms: i64,
    outbox: Vec<Output>,
}

/// The `__consumer_offsets` partition that holds `group`: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, with Java's UTF-16 string hash.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

/// Why a group id is refused, if it is.
pub fn validate_group_id(group: &str) -> Result<(), String> {
    if group.is_empty() {
        return Err("the group id is empty".into());
    }
    if group.len() > MAX_GROUP_ID_BYTES {
        return Err(format!("the group id is {} bytes; at most {MAX_GROUP_ID_BYTES} are allowed", group.len()));
    }
    Ok(())
}

impl GroupCoordinator {
    /// A coordinator with every partition ready (nothing to load). `incarnation` makes
    /// member ids unique across restarts; pass something random.
    pub fn new(config: CoordinatorConfig, incarnation: u64, now_ms: i64) -> Self {
        let partitions = vec![Load::Ready; config.offsets_partitions.max(1) as usize];
        let next_retention_check_ms = now_ms + config.offsets_retention_check_interval_ms;
        Self {
            config,
            groups: HashMap::new(),
            partitions,
            incarnation,
            member_seq: 0,
            next_retention_check_ms,
            outbox: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The outputs produced since the last call.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    /// The `__consumer_offsets` partition of `group`.
    pub fn partition_for(&self, group: &str) -> i32 {
        partition_for(group, self.partitions.len() as i32)
    }

    // ---- loading ----

    /// Marks partitions as loading: their groups answer COORDINATOR_LOAD_IN_PROGRESS.
    pub fn begin_loading(&mut self, partitions: impl IntoIterator<Item = i32>) {
        for p in partitions {
            if let Some(state) = self.partitions.get_mut(p as usize) {
                *state = Load::Loading;
            }
        }
    }

    /// Replays one record read back from `__consumer_offsets` (`value` `None`: a tombstone).
    pub fn load_record(&mut self, key: &CoordinatorKey, value: Option<&[u8]>, now_ms: i64) -> Result<(), String> {
        match key {
            CoordinatorKey::Offset { group, topic, partition } => match value {
                Some(v) => {
                    let value = OffsetValue::decode(v).map_err(|e| e.to_string())?;
                    let g = self.groups.entry(group.clone()).or_insert_with(|| Group::new(group, now_ms));
                    g.offsets.insert((topic.clone(), *partition), value);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(group) {
                        g.offsets.remove(&(topic.clone(), *partition));
                    }
                }
            },
            CoordinatorKey::Group { group } => match value {
                Some(v) => {
                    let value = GroupValue::decode(v).map_err(|e| e.to_string())?;
                    let g = self.groups.entry(group.clone()).or_insert_with(|| Group::new(group, now_ms));
                    g.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
                    g.generation = value.generation;
                    g.protocol = value.protocol;
                    g.leader = value.leader;
                    g.state_since_ms = value.state_timestamp_ms;
                    g.members.clear();
                    g.static_members.clear();
                    for m in value.members {
                        if let Some(instance) = &m.group_instance_id {
                            g.static_members.insert(instance.clone(), m.member_id.clone());
                        }
                        let protocol = g.protocol.clone().unwrap_or_default();
                        g.members.insert(
                            m.member_id.clone(),
                            Member {
                                id: m.member_id,
                                instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                session_timeout_ms: m.session_timeout_ms,
                                rebalance_timeout_ms: m.rebalance_timeout_ms,
                                protocols: vec![(protocol, m.subscription)],
                                assignment: m.assignment,
                                last_heartbeat_ms: now_ms,
                                awaiting_join: None,
                                awaiting_sync: None,
                            },
                        );
                    }
                }
                None => {
                    self.groups.remove(group);
                }
            },
        }
        Ok(())
    }

    /// Ends loading `partition`: its groups come back Stable (members must heartbeat within
    /// their session timeout from now) or Empty.
    pub fn finish_loading(&mut self, partition: i32, now_ms: i64) {
        let n = self.partitions.len() as i32;
        for g in self.groups.values_mut().filter(|g| partition_for(&g.id, n) == partition) {
            if g.members.is_empty() {
                g.state = GroupState::Empty;
            } else {
                g.state = GroupState::Stable;
                for m in g.members.values_mut() {
                    m.last_heartbeat_ms = now_ms;
                }
            }
        }
        self.groups.retain(|_, g| !(g.members.is_empty() && g.offsets.is_empty() && g.protocol_type.is_none()));
        if let Some(state) = self.partitions.get_mut(partition as usize) {
            *state = Load::Ready;
        }
    }

    /// A partition's load failed part way: the groups it had replayed are dropped, so no
    /// partial state is ever served, and it stays loading (COORDINATOR_LOAD_IN_PROGRESS)
    /// until a new load finishes.
    pub fn abandon_loading(&mut self, partition: i32) {
        let n = self.partitions.len() as i32;
        self.groups.retain(|_, g| partition_for(&g.id, n) != partition);
        if let Some(state) = self.partitions.get_mut(partition as usize) {
            *state = Load::Loading;
        }
    }

    /// This broker stopped leading `partition` of `__consumer_offsets`: its groups are
    /// dropped here and answer NOT_COORDINATOR, so clients find the new coordinator.
    pub fn resign(&mut self, partition: i32) {
        let n = self.partitions.len() as i32;
        self.groups.retain(|_, g| partition_for(&g.id, n) != partition);
        if let Some(state) = self.partitions.get_mut(partition as usize) {
            *state = Load::NotCoordinator;
        }
    }

    /// Whether `partition`'s groups are served here.
    pub fn is_partition_ready(&self, partition: i32) -> bool {
        self.partitions.get(partition as usize) == Some(&Load::Ready)
    }

    /// Whether `partition` is loading (not resigned or loaded meanwhile).
    pub fn is_partition_loading(&self, partition: i32) -> bool {
        self.partitions.get(partition as usize) == Some(&Load::Loading)
    }

    /// Whether any partition is still loading.
    pub fn is_loading(&self) -> bool {
        self.partitions.contains(&Load::Loading)
    }

    /// Whether `group`'s partition is loaded. Timeouts and retention leave the groups of a
    /// loading partition alone: what they hold so far is not their state yet.
    fn is_ready(&self, group: &str) -> bool {
        self.partitions.get(self.partition_for(group) as usize) == Some(&Load::Ready)
    }

    fn check_group(&self, group: &str) -> Result<(), i16> {
        validate_group_id(group).map_err(|_| codes::INVALID_GROUP_ID)?;
        match self.partitions.get(self.partition_for(group) as usize) {
            Some(Load::Ready) => Ok(()),
            Some(Load::NotCoordinator) => Err(codes::NOT_COORDINATOR),
            _ => Err(codes::COORDINATOR_LOAD_IN_PROGRESS),
        }
    }

    // ---- membership ----

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.member_seq += 1;
        let uuid = uuid::Uuid::from_u64_pair(self.incarnation, self.member_seq);
        format!("{client_id}-{}", uuid.hyphenated())
    }

    /// JoinGroup. The answer arrives as an [`Output::Join`] for `request`, now or later.
    pub fn join_group(&mut self, now_ms: i64, request: RequestId, req: JoinRequest) {
        if let Err(code) = self.validate_join(&req) {
            return self.reply_join(request, join_error(code, &req.member_id));
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                return self.reply_join(request, join_error(codes::UNKNOWN_MEMBER_ID, &req.member_id));
            }
            self.groups.insert(req.group_id.clone(), Group::new(&req.group_id, now_ms));
        }
        let group_id = req.group_id.clone();
        let max_size = self.config.max_group_size;
        let Some(group) = self.groups.get(&group_id) else { return };
        if !group.supports(&req.protocol_type, &req.protocols) {
            return self.reply_join(request, join_error(codes::INCONSISTENT_GROUP_PROTOCOL, &req.member_id));
        }
        let known = group.members.contains_key(&req.member_id) || group.pending_members.contains_key(&req.member_id);
        let rejoining_static = req.group_instance_id.as_ref().is_some_and(|i| group.static_members.contains_key(i));
        if !known && !rejoining_static && group.members.len() >= max_size {
            return self.reply_join(request, join_error(codes::GROUP_MAX_SIZE_REACHED, &req.member_id));
        }

        if req.member_id.is_empty() {
            let member_id = self.new_member_id(&req.client_id);
            if let Some(instance) = req.group_instance_id.clone() {
                let old = self.groups.get(&group_id).and_then(|g| g.static_members.get(&instance).cloned());
                if let Some(old) = old {
                    return self.replace_static_member(now_ms, request, &group_id, &old, member_id, req);
                }
            } else if req.require_known_member_id {
                let group = self.groups.get_mut(&group_id).expect("checked above");
                let deadline = now_ms + i64::from(req.session_timeout_ms);
                group.pending_members.insert(member_id.clone(), deadline);
                return self.reply_join(request, join_error(codes::MEMBER_ID_REQUIRED, &member_id));
            }
            return self.add_member_and_rebalance(now_ms, request, &group_id, member_id, req);
        }

        let group = self.groups.get_mut(&group_id).expect("checked above");
        if group.pending_members.remove(&req.member_id).is_some() {
            let member_id = req.member_id.clone();
            return self.add_member_and_rebalance(now_ms, request, &group_id, member_id, req);
        }
        if let Err(code) = validate_member(group, &req.member_id, req.group_instance_id.as_deref()) {
            return self.reply_join(request, join_error(code, &req.member_id));
        }
        let member = group.members.get_mut(&req.member_id).expect("validated");
        match group.state {
            GroupState::PreparingRebalance => {
                update_member(member, &req, now_ms);
                if let Some(old) = member.awaiting_join.replace(request) {
                    self.outbox.push(Output::Join(old, join_error(codes::REBALANCE_IN_PROGRESS, &req.member_id)));
                }
                self.maybe_complete_join(now_ms, &group_id);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
                let unchanged = member.same_protocols(&req.protocols);
                let stable_and_unchanged = group.state == GroupState::Stable && unchanged && !is_leader;
                if stable_and_unchanged || (group.state == GroupState::CompletingRebalance && unchanged) {
                    // A member repeating its join (a lost response, say) gets the current
                    // generation again without disturbing the others.
                    member.last_heartbeat_ms = now_ms;
                    let response = current_join_response(group, &req.member_id, false);
                    return self.reply_join(request, response);
                }
                update_member(member, &req, now_ms);
                member.awaiting_join = Some(request);
                self.prepare_rebalance(now_ms, &group_id, "a member rejoined with new metadata or is the leader");
            }
            GroupState::Empty => self.reply_join(request, join_error(codes::UNKNOWN_MEMBER_ID, &req.member_id)),
        }
    }

    fn validate_join(&self, req: &JoinRequest) -> Result<(), i16> {
        self.check_group(&req.group_id)?;
        let timeout = req.session_timeout_ms;
        if timeout < self.config.min_session_timeout_ms || timeout > self.config.max_session_timeout_ms {
            return Err(codes::INVALID_SESSION_TIMEOUT);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        Ok(())
    }

    fn add_member_and_rebalance(
        &mut self,
        now_ms: i64,
        request: RequestId,
        group_id: &str,
        member_id: String,
        req: JoinRequest,
    ) {
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(group_id) else { return };
        let member = Member {
            id: member_id.clone(),
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            awaiting_join: Some(request),
            awaiting_sync: None,
        };
        if let Some(instance) = &req.group_instance_id {
            group.static_members.insert(instance.clone(), member_id.clone());
        }
        if group.members.is_empty() {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
            // As in Kafka, the first member to join leads.
            group.leader = Some(member_id.clone());
        }
        group.members.insert(member_id, member);
        match group.state {
            GroupState::Empty if initial_delay_ms > 0 => {
                // The first member of an empty group: wait for others before rebalancing.
                let rebalance_timeout = group.rebalance_timeout_ms();
                let delay = initial_delay_ms.min(rebalance_timeout);
                group.transition(GroupState::PreparingRebalance, now_ms);
                group.initial_delay = Some(InitialDelay {
                    deadline_ms: now_ms + delay,
                    remaining_ms: rebalance_timeout - delay,
                    new_member_added: false,
                });
                group.join_deadline_ms = Some(now_ms + rebalance_timeout);
            }
            GroupState::PreparingRebalance => {
                if let Some(delay) = &mut group.initial_delay {
                    delay.new_member_added = true;
                }
                self.maybe_complete_join(now_ms, group_id);
            }
            _ => self.prepare_rebalance(now_ms, group_id, "a new member joined"),
        }
    }

    /// A static member restarted with a new member id: the old id is fenced, and a
    /// stable group with an unchanged subscription keeps its generation and assignment.
    fn replace_static_member(
        &mut self,
        now_ms: i64,
        request: RequestId,
        group_id: &str,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
    ) {
        let partition = self.partition_for(group_id);
        let Some(group) = self.groups.get_mut(group_id) else { return };
        let Some(mut member) = group.members.remove(old_id) else { return };
        if let Some(waiting) = member.awaiting_join.take() {
            self.outbox.push(Output::Join(waiting, join_error(codes::FENCED_INSTANCE_ID, old_id)));
        }
        if let Some(waiting) = member.awaiting_sync.take() {
            self.outbox.push(Output::Sync(waiting, sync_error(codes::FENCED_INSTANCE_ID)));
        }
        member.id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.last_heartbeat_ms = now_ms;
        if let Some(instance) = &req.group_instance_id {
            group.static_members.insert(instance.clone(), new_id.clone());
        }
        if group.leader.as_deref() == Some(old_id) {
            group.leader = Some(new_id.clone());
        }
        if group.pending_sync.remove(old_id) {
            group.pending_sync.insert(new_id.clone());
        }
        tracing::info!(group = group_id, old = old_id, new = %new_id, "static member rejoined; old member id fenced");
        // As in Kafka, a restarted static member only forces a rebalance if the group's
        // protocol would change; its new metadata is taken as is.
        let previous = std::mem::replace(&mut member.protocols, req.protocols.clone());
        group.members.insert(new_id.clone(), member);
        let unchanged = group.select_protocol() == group.protocol;
        let Some(mut member) = group.members.remove(&new_id) else { return };
        if !unchanged {
            member.protocols = previous;
        }
        match group.state {
            GroupState::Stable if unchanged => {
                group.members.insert(new_id.clone(), member);
                let is_leader = group.leader.as_deref() == Some(new_id.as_str());
                let mut response = current_join_response(group, &new_id, is_leader);
                if is_leader && !req.supports_skip_assignment {
                    // Before KIP-814 a client cannot be told to keep the assignment, so, as
                    // Kafka does, the restarted leader is answered as a follower (naming its
                    // old id as leader) and syncs to get its stored assignment back.
                    response.leader = old_id.to_string();
                    response.members.clear();
                    response.skip_assignment = false;
                }
                // Persisted before the answer, so that the old id stays fenced across a
                // coordinator restart.
                let record = group_record(group);
                let then = vec![Output::Join(request, response)];
                self.outbox.push(Output::Append {
                    partition,
                    records: vec![record],
                    group: Some(group_id.into()),
                    generation: group.generation,
                    then,
                });
            }
            GroupState::PreparingRebalance => {
                update_member(&mut member, &req, now_ms);
                member.awaiting_join = Some(request);
                group.members.insert(new_id, member);
                self.maybe_complete_join(now_ms, group_id);
            }
            _ => {
                update_member(&mut member, &req, now_ms);
                member.awaiting_join = Some(request);
                group.members.insert(new_id, member);
                self.prepare_rebalance(now_ms, group_id, "a static member rejoined with a new subscription");
            }
        }
    }

    fn prepare_rebalance(&mut self, now_ms: i64, group_id: &str, reason: &str) {
        let Some(group) = self.groups.get_mut(group_id) else { return };
        // Waiting SyncGroups: those of CompletingRebalance, and those of a Stable group
        // whose assignment was still being stored.
        for m in group.members.values_mut() {
            if let Some(waiting) = m.awaiting_sync.take() {
                self.outbox.push(Output::Sync(waiting, sync_error(codes::REBALANCE_IN_PROGRESS)));
            }
        }
        group.unstored_assignment = None;
        group.pending_sync.clear();
        group.sync_deadline_ms = None;
        group.initial_delay = None;
        group.join_deadline_ms = Some(now_ms + group.rebalance_timeout_ms());
        group.transition(GroupState::PreparingRebalance, now_ms);
        tracing::info!(group = group_id, generation = group.generation, reason, "preparing to rebalance");
        self.maybe_complete_join(now_ms, group_id);
    }

    fn maybe_complete_join(&mut self, now_ms: i64, group_id: &str) {
        let Some(group) = self.groups.get(group_id) else { return };
        if group.state == GroupState::PreparingRebalance && group.initial_delay.is_none() && group.all_joined() {
            self.complete_join(now_ms, group_id);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, the generation moves
    /// on, and every joined member is answered (the leader with the member list).
    fn complete_join(&mut self, now_ms: i64, group_id: &str) {
        let partition = self.partition_for(group_id);
        let Some(group) = self.groups.get_mut(group_id) else { return };
        let gone: Vec<String> =
            group.members.values().filter(|m| m.awaiting_join.is_none()).map(|m| m.id.clone()).collect();
        for id in &gone {
            if let Some(m) = group.members.remove(id)
                && let Some(instance) = m.instance_id
            {
                group.static_members.remove(&instance);
            }
            tracing::info!(group = group_id, member = %id, "member did not rejoin in time; removed");
        }
        group.pending_members.clear();
        group.initial_delay = None;
        group.join_deadline_ms = None;
        group.generation += 1;
        if group.members.is_empty() {
            self.outbox.push(become_empty(group, partition, now_ms));
            return;
        }
        group.protocol = group.select_protocol();
        if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
            group.leader = group.members.keys().next().cloned();
        }
        group.transition(GroupState::CompletingRebalance, now_ms);
        group.pending_sync = group.members.keys().cloned().collect();
        group.sync_deadline_ms = Some(now_ms + group.rebalance_timeout_ms());
        tracing::info!(
            group = group_id,
            generation = group.generation,
            members = group.members.len(),
            protocol = group.protocol.as_deref().unwrap_or_default(),
            "join complete"
        );
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let is_leader = group.leader.as_deref() == Some(id.as_str());
            let response = current_join_response(group, &id, is_leader);
            let member = group.members.get_mut(&id).expect("listed above");
            member.last_heartbeat_ms = now_ms;
            if let Some(waiting) = member.awaiting_join.take() {
                self.outbox.push(Output::Join(waiting, response));
            }
        }
    }

    /// SyncGroup. The answer arrives as an [`Output::Sync`] for `request`, now or later.
    pub fn sync_group(&mut self, now_ms: i64, request: RequestId, req: SyncRequest) {
        let partition = self.partition_for(&req.group_id);
        let reply = |c: &mut Self, r: SyncResponse| c.outbox.push(Output::Sync(request, r));
        if let Err(code) = self.check_group(&req.group_id) {
            return reply(self, sync_error(code));
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return reply(self, sync_error(codes::UNKNOWN_MEMBER_ID));
        };
        if let Err(code) = validate_member(group, &req.member_id, req.group_instance_id.as_deref()) {
            return reply(self, sync_error(code));
        }
        if req.generation != group.generation {
            return reply(self, sync_error(codes::ILLEGAL_GENERATION));
        }
        let type_mismatch = req.protocol_type.as_ref().is_some_and(|t| group.protocol_type.as_ref() != Some(t));
        let name_mismatch = req.protocol.as_ref().is_some_and(|p| group.protocol.as_ref() != Some(p));
        if type_mismatch || name_mismatch {
            return reply(self, sync_error(codes::INCONSISTENT_GROUP_PROTOCOL));
        }
        match group.state {
            GroupState::Empty => reply(self, sync_error(codes::UNKNOWN_MEMBER_ID)),
            GroupState::PreparingRebalance => reply(self, sync_error(codes::REBALANCE_IN_PROGRESS)),
            GroupState::CompletingRebalance => {
                group.pending_sync.remove(&req.member_id);
                let member = group.members.get_mut(&req.member_id).expect("validated");
                member.last_heartbeat_ms = now_ms;
                if let Some(old) = member.awaiting_sync.replace(request) {
                    self.outbox.push(Output::Sync(old, sync_error(codes::REBALANCE_IN_PROGRESS)));
                }
                if group.leader.as_deref() != Some(req.member_id.as_str()) {
                    return;
                }
                let assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                for m in group.members.values_mut() {
                    m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                }
                group.transition(GroupState::Stable, now_ms);
                group.unstored_assignment = Some(group.generation);
                let record = group_record(group);
                let (protocol_type, protocol) = (group.protocol_type.clone(), group.protocol.clone());
                let mut then = Vec::new();
                for m in group.members.values_mut() {
                    if let Some(waiting) = m.awaiting_sync.take() {
                        m.last_heartbeat_ms = now_ms;
                        let response = SyncResponse {
                            error: codes::NONE,
                            protocol_type: protocol_type.clone(),
                            protocol: protocol.clone(),
                            assignment: m.assignment.clone(),
                        };
                        then.push(Output::Sync(waiting, response));
                    }
                }
                // The assignment goes out only once it is in the log, as in Kafka.
                let (group_id, generation) = (Some(req.group_id.clone()), group.generation);
                self.outbox.push(Output::Append {
                    partition,
                    records: vec![record],
                    group: group_id,
                    generation,
                    then,
                });
                tracing::info!(group = %req.group_id, generation = group.generation, "rebalance complete; group stable");
            }
            GroupState::Stable => {
                group.pending_sync.remove(&req.member_id);
                let member = group.members.get_mut(&req.member_id).expect("validated");
                member.last_heartbeat_ms = now_ms;
                if group.unstored_assignment == Some(group.generation) {
                    // Answered by assignment_stored, with the members that synced first.
                    if let Some(old) = member.awaiting_sync.replace(request) {
                        self.outbox.push(Output::Sync(old, sync_error(codes::REBALANCE_IN_PROGRESS)));
                    }
                    return;
                }
                let response = SyncResponse {
                    error: codes::NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol: group.protocol.clone(),
                    assignment: member.assignment.clone(),
                };
                reply(self, response);
            }
        }
        if let Some(group) = self.groups.get_mut(&req.group_id)
            && group.pending_sync.is_empty()
        {
            group.sync_deadline_ms = None;
        }
    }

    /// Heartbeat: keeps the member's session alive and tells it whether to rejoin.
    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if let Err(code) = self.check_group(group_id) {
            return code;
        }
        let Some(group) = self.groups.get_mut(group_id) else { return codes::UNKNOWN_MEMBER_ID };
        if let Err(code) = validate_member(group, member_id, instance_id) {
            return code;
        }
        if generation != group.generation {
            return codes::ILLEGAL_GENERATION;
        }
        let state = group.state;
        if let Some(member) = group.members.get_mut(member_id) {
            member.last_heartbeat_ms = now_ms;
        }
        match state {
            GroupState::PreparingRebalance => codes::REBALANCE_IN_PROGRESS,
            GroupState::CompletingRebalance | GroupState::Stable => codes::NONE,
            GroupState::Empty => codes::UNKNOWN_MEMBER_ID,
        }
    }

    /// LeaveGroup for members given by member id, or by `group.instance.id` alone (v3+).
    /// Returns the group-level error and one code per member.
    pub fn leave_group(
        &mut self,
        now_ms: i64,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> (i16, Vec<i16>) {
        if let Err(code) = self.check_group(group_id) {
            return (code, vec![code; members.len()]);
        }
        if !self.groups.contains_key(group_id) {
            return (codes::UNKNOWN_MEMBER_ID, vec![codes::UNKNOWN_MEMBER_ID; members.len()]);
        }
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let group = self.groups.get_mut(group_id).expect("checked above");
            let id = match (member_id.is_empty(), instance_id) {
                (true, Some(instance)) => group.static_members.get(instance).cloned().unwrap_or_default(),
                _ => member_id.clone(),
            };
            if group.pending_members.remove(&id).is_some() {
                results.push(codes::NONE);
                continue;
            }
            match validate_member(group, &id, instance_id.as_deref()) {
                Ok(()) => {
                    tracing::info!(group = group_id, member = %id, "member left");
                    self.remove_member(now_ms, group_id, &id);
                    results.push(codes::NONE);
                }
                Err(code) => results.push(code),
            }
        }
        (codes::NONE, results)
    }

    fn remove_member(&mut self, now_ms: i64, group_id: &str, member_id: &str) {
        let partition = self.partition_for(group_id);
        let Some(group) = self.groups.get_mut(group_id) else { return };
        let Some(member) = group.members.remove(member_id) else { return };
        if let Some(instance) = &member.instance_id {
            group.static_members.remove(instance);
        }
        if let Some(waiting) = member.awaiting_join {
            self.outbox.push(Output::Join(waiting, join_error(codes::UNKNOWN_MEMBER_ID, member_id)));
        }
        if let Some(waiting) = member.awaiting_sync {
            self.outbox.push(Output::Sync(waiting, sync_error(codes::UNKNOWN_MEMBER_ID)));
        }
        group.pending_sync.remove(member_id);
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance if group.members.is_empty() => {
                group.generation += 1;
                group.pending_sync.clear();
                group.sync_deadline_ms = None;
                self.outbox.push(become_empty(group, partition, now_ms));
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, group_id, "a member left");
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, group_id),
            GroupState::Empty => {}
        }
    }

    // ---- offsets ----

    /// Validates an OffsetCommit. On success the caller appends the returned records and
    /// then calls [`Self::complete_commit`]; nothing changes until then.
    pub fn prepare_commit(&mut self, now_ms: i64, req: CommitRequest) -> Result<PendingCommit, i16> {
        self.check_group(&req.group_id)?;
        if let Some(group) = self.groups.get_mut(&req.group_id) {
            let outside_group_management = req.generation < 0 && req.member_id.is_empty();
            if outside_group_management && group.state == GroupState::Empty {
                // Tools and `assign` users commit without membership while nobody is in the group.
            } else {
                validate_member(group, &req.member_id, req.group_instance_id.as_deref())?;
                if req.generation != group.generation {
                    return Err(codes::ILLEGAL_GENERATION);
                }
                if group.state == GroupState::CompletingRebalance {
                    return Err(codes::REBALANCE_IN_PROGRESS);
                }
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    m.last_heartbeat_ms = now_ms;
                }
            }
        } else if req.generation >= 0 {
            return Err(codes::ILLEGAL_GENERATION);
        }
        let mut pending = PendingCommit {
            group_id: req.group_id.clone(),
            partition: self.partition_for(&req.group_id),
            records: Vec::new(),
            accepted: Vec::new(),
            results: Vec::new(),
        };
        for o in req.offsets {
            let metadata = o.metadata.unwrap_or_default();
            if metadata.len() > self.config.max_metadata_bytes {
                pending.results.push((o.topic, o.partition, codes::OFFSET_METADATA_TOO_LARGE));
                continue;
            }
            let value =
                OffsetValue { offset: o.offset, leader_epoch: o.leader_epoch, metadata, commit_timestamp_ms: now_ms };
            let key =
                CoordinatorKey::Offset { group: req.group_id.clone(), topic: o.topic.clone(), partition: o.partition };
            pending.records.push((key.encode(), Some(value.encode())));
            pending.results.push((o.topic.clone(), o.partition, codes::NONE));
            pending.accepted.push((o.topic, o.partition, value));
        }
        Ok(pending)
    }

    /// Applies a commit whose records were appended.
    pub fn complete_commit(&mut self, now_ms: i64, commit: PendingCommit) -> Vec<(String, i32, i16)> {
        let group = self.groups.entry(commit.group_id.clone()).or_insert_with(|| Group::new(&commit.group_id, now_ms));
        for (topic, partition, value) in commit.accepted {
            group.offsets.insert((topic, partition), value);
        }
        commit.results
    }

    /// OffsetFetch: the committed offsets of the given partitions (`None`: all of them).
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<(String, i32, Option<OffsetValue>)>, i16> {
        self.check_group(group_id)?;
        let offsets = self.groups.get(group_id).map(|g| &g.offsets);
        Ok(match partitions {
            Some(wanted) => wanted
                .iter()
                .flat_map(|(topic, ps)| ps.iter().map(move |p| (topic, *p)))
                .map(|(topic, p)| {
                    let value = offsets.and_then(|o| o.get(&(topic.clone(), p))).cloned();
                    (topic.clone(), p, value)
                })
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|((topic, p), value)| (topic.clone(), *p, Some(value.clone())))
                .collect(),
        })
    }

    /// OffsetDelete: the tombstones for committed offsets of topics the group no longer
    /// consumes, with a code per partition. Nothing changes until
    /// [`Self::complete_deletion`], once the tombstones are written.
    pub fn prepare_delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<(Vec<i16>, PendingDeletion), i16> {
        self.check_group(group_id)?;
        let Some(group) = self.groups.get(group_id) else { return Err(codes::GROUP_ID_NOT_FOUND) };
        let subscribed = match group.state {
            GroupState::Empty => Default::default(),
            _ => match group.subscribed_topics() {
                Some(topics) => topics,
                None => return Err(codes::NON_EMPTY_GROUP),
            },
        };
        let mut offsets = Vec::new();
        let results = partitions
            .iter()
            .map(|(topic, p)| {
                if subscribed.contains(topic) {
                    return codes::GROUP_SUBSCRIBED_TO_TOPIC;
                }
                if group.offsets.contains_key(&(topic.clone(), *p)) && !offsets.contains(&(topic.clone(), *p)) {
                    offsets.push((topic.clone(), *p));
                }
                codes::NONE
            })
            .collect();
        let records = offset_tombstones(group_id, offsets.iter());
        let pending = PendingDeletion {
            group_id: group_id.to_string(),
            partition: self.partition_for(group_id),
            records,
            offsets,
            whole_group: false,
        };
        Ok((results, pending))
    }

    /// DeleteGroups: the tombstones that delete an empty group and its offsets. Nothing
    /// changes until [`Self::complete_deletion`], once they are written.
    pub fn prepare_delete_group(&self, group_id: &str) -> Result<PendingDeletion, i16> {
        self.check_group(group_id)?;
        match self.groups.get(group_id) {
            None => Err(codes::GROUP_ID_NOT_FOUND),
            Some(g) if g.state != GroupState::Empty => Err(codes::NON_EMPTY_GROUP),
            Some(group) => {
                let offsets: Vec<(String, i32)> = group.offsets.keys().cloned().collect();
                let mut records = offset_tombstones(group_id, offsets.iter());
                records.push((CoordinatorKey::Group { group: group_id.to_string() }.encode(), None));
                let partition = self.partition_for(group_id);
                Ok(PendingDeletion { group_id: group_id.to_string(), partition, records, offsets, whole_group: true })
            }
        }
    }

    /// Applies a deletion whose tombstones were written.
    pub fn complete_deletion(&mut self, deletion: PendingDeletion) {
        if deletion.whole_group {
            self.groups.remove(&deletion.group_id);
            tracing::info!(group = %deletion.group_id, "deleted group");
        } else if let Some(group) = self.groups.get_mut(&deletion.group_id) {
            for key in &deletion.offsets {
                group.offsets.remove(key);
            }
        }
    }

    /// DescribeGroups for one group.
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, i16> {
        self.check_group(group_id)?;
        let Some(group) = self.groups.get(group_id) else {
            return Ok(GroupDescription {
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let stable = group.state == GroupState::Stable;
        let protocol = if stable { group.protocol.clone().unwrap_or_default() } else { String::new() };
        let members = group
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable { m.metadata(&protocol) } else { Bytes::new() },
                assignment: if stable { m.assignment.clone() } else { Bytes::new() },
            })
            .collect();
        Ok(GroupDescription {
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        })
    }

    /// ListGroups, optionally only those in the given states (names compared without case).
    pub fn list_groups(&self, states: &[String]) -> Result<Vec<ListedGroup>, i16> {
        if self.is_loading() {
            return Err(codes::COORDINATOR_LOAD_IN_PROGRESS);
        }
        let mut listed: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(g.state.name())))
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(listed)
    }

    // ---- time ----

    /// The earliest time [`Self::tick`] has something to do.
    pub fn next_deadline_ms(&self) -> i64 {
        let mut next = self.next_retention_check_ms;
        for g in self.groups.values().filter(|g| self.is_ready(&g.id)) {
            let deadlines = [
                g.initial_delay.map(|d| d.deadline_ms),
                if g.initial_delay.is_none() { g.join_deadline_ms } else { None },
                g.sync_deadline_ms,
            ];
            for d in deadlines.into_iter().flatten() {
                next = next.min(d);
            }
            for m in g.members.values() {
                if let Some(d) = m.session_deadline_ms() {
                    next = next.min(d);
                }
            }
            for d in g.pending_members.values() {
                next = next.min(*d);
            }
        }
        next
    }

    /// Runs every timeout that is due: initial delays, join and sync deadlines, session
    /// expiry, unused member ids, and offset retention.
    pub fn tick(&mut self, now_ms: i64) {
        let mut ids: Vec<String> = self.groups.keys().filter(|id| self.is_ready(id)).cloned().collect();
        ids.sort();
        for id in &ids {
            self.tick_group(now_ms, id);
        }
        if now_ms >= self.next_retention_check_ms {
            self.next_retention_check_ms = now_ms + self.config.offsets_retention_check_interval_ms;
            self.expire_offsets(now_ms);
        }
    }

    fn tick_group(&mut self, now_ms: i64, id: &str) {
        let Some(group) = self.groups.get_mut(id) else { return };
        group.pending_members.retain(|_, deadline| *deadline > now_ms);
        if let Some(delay) = group.initial_delay
            && now_ms >= delay.deadline_ms
        {
            if delay.new_member_added && delay.remaining_ms > 0 {
                let extend = delay.remaining_ms.min(self.config.initial_rebalance_delay_ms);
                group.initial_delay = Some(InitialDelay {
                    deadline_ms: now_ms + extend,
                    remaining_ms: delay.remaining_ms - extend,
                    new_member_added: false,
                });
            } else {
                self.complete_join(now_ms, id);
            }
            return;
        }
        if group.state == GroupState::PreparingRebalance && group.join_deadline_ms.is_some_and(|d| now_ms >= d) {
            self.complete_join(now_ms, id);
            return;
        }
        if group.sync_deadline_ms.is_some_and(|d| now_ms >= d) && !group.pending_sync.is_empty() {
            let late: Vec<String> = group.pending_sync.iter().cloned().collect();
            for member in late {
                tracing::info!(group = id, member = %member, "member did not sync in time; removed");
                self.remove_member(now_ms, id, &member);
            }
            return;
        }
        let expired: Vec<String> = group
            .members
            .values()
            .filter(|m| m.session_deadline_ms().is_some_and(|d| now_ms >= d))
            .map(|m| m.id.clone())
            .collect();
        for member in expired {
            tracing::info!(group = id, member = %member, "session timed out; member removed");
            self.remove_member(now_ms, id, &member);
        }
    }

    /// `offsets.retention.minutes`: offsets of an empty group expire that long after it
    /// became empty; a group that never had members (commits from tools or `assign`
    /// users) expires each offset that long after its commit; a stable consumer group
    /// expires the offsets of topics it no longer subscribes to (KIP-211, KIP-496).
    fn expire_offsets(&mut self, now_ms: i64) {
        let retention = self.config.offsets_retention_ms;
        let n = self.partitions.len() as i32;
        let mut by_partition: BTreeMap<i32, Vec<CoordinatorRecord>> = BTreeMap::new();
        let mut dead = Vec::new();
        let loaded = |group: &str| self.partitions.get(partition_for(group, n) as usize) == Some(&Load::Ready);
        for group in self.groups.values_mut().filter(|g| loaded(&g.id)) {
            let expired: Vec<(String, i32)> = match group.state {
                GroupState::Empty => group
                    .offsets
                    .iter()
                    .filter(|(_, v)| {
                        let base =
                            if group.protocol_type.is_some() { group.state_since_ms } else { v.commit_timestamp_ms };
                        base + retention <= now_ms
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
                GroupState::Stable => match group.subscribed_topics() {
                    Some(subscribed) => group
                        .offsets
                        .iter()
                        .filter(|((topic, _), v)| {
                            !subscribed.contains(topic) && v.commit_timestamp_ms + retention <= now_ms
                        })
                        .map(|(k, _)| k.clone())
                        .collect(),
                    None => Vec::new(),
                },
                _ => Vec::new(),
            };
            if expired.is_empty() {
                continue;
            }
            let records = by_partition.entry(partition_for(&group.id, n)).or_default();
            records.extend(offset_tombstones(&group.id, expired.iter()));
            for k in &expired {
                group.offsets.remove(k);
            }
            tracing::info!(group = %group.id, expired = expired.len(), "expired committed offsets");
            if group.state == GroupState::Empty && group.offsets.is_empty() {
                records.push((CoordinatorKey::Group { group: group.id.clone() }.encode(), None));
                dead.push(group.id.clone());
            }
        }
        for id in dead {
            self.groups.remove(&id);
        }
        for (partition, records) in by_partition {
            self.outbox.push(Output::Append { partition, records, group: None, generation: -1, then: Vec::new() });
        }
    }

    /// Answers every waiting JoinGroup and SyncGroup with NOT_COORDINATOR, so that a
    /// broker shutting down does not hold connections open.
    pub fn shutdown(&mut self) {
        for group in self.groups.values_mut() {
            for m in group.members.values_mut() {
                if let Some(waiting) = m.awaiting_join.take() {
                    self.outbox.push(Output::Join(waiting, join_error(codes::NOT_COORDINATOR, &m.id)));
                }
                if let Some(waiting) = m.awaiting_sync.take() {
                    self.outbox.push(Output::Sync(waiting, sync_error(codes::NOT_COORDINATOR)));
                }
            }
        }
    }

    /// The records of an [`Output::Append`] for `group_id` in `generation` are on every
    /// in-sync replica: if they held its assignment, the SyncGroups that arrived after the
    /// leader's get theirs now. Returns whether the group is still in `generation` and not
    /// rebalancing (else the answers that waited on the records are out of date, as Kafka
    /// finds them in its storeGroup callback).
    pub fn assignment_stored(&mut self, group_id: &str, generation: i32) -> bool {
        let Some(group) = self.groups.get_mut(group_id) else { return false };
        if group.generation != generation || group.state == GroupState::PreparingRebalance {
            return false;
        }
        if group.unstored_assignment == Some(generation) {
            group.unstored_assignment = None;
            for m in group.members.values_mut() {
                if let Some(waiting) = m.awaiting_sync.take() {
                    let response = SyncResponse {
                        error: codes::NONE,
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        assignment: m.assignment.clone(),
                    };
                    self.outbox.push(Output::Sync(waiting, response));
                }
            }
        }
        true
    }

    /// The records of an [`Output::Append`] could not be written (or replicated); `code` is
    /// the error to answer with. The answers that waited on them get it instead, and a
    /// group whose new assignment or member could not be stored rebalances again, as in
    /// Kafka, unless it has reached another `generation` since.
    pub fn write_failed(&mut self, now_ms: i64, group_id: Option<&str>, generation: i32, code: i16, then: Vec<Output>) {
        for output in then {
            let failed = match output {
                Output::Sync(id, _) => Output::Sync(id, sync_error(code)),
                Output::Join(id, response) => Output::Join(id, join_error(code, &response.member_id)),
                append @ Output::Append { .. } => append,
            };
            self.outbox.push(failed);
        }
        let Some(group_id) = group_id else { return };
        let Some(group) = self.groups.get_mut(group_id) else { return };
        if group.generation == generation && matches!(group.state, GroupState::Stable | GroupState::CompletingRebalance)
        {
            for m in group.members.values_mut() {
                m.assignment = Default::default();
            }
            self.prepare_rebalance(now_ms, group_id, "its metadata could not be written");
        }
    }

    fn reply_join(&mut self, request: RequestId, response: JoinResponse) {
        self.outbox.push(Output::Join(request, response));
    }
}

/// The last member left: the group keeps its offsets and generation but no protocol or
/// leader, and the record that says so is to be stored.
fn become_empty(group: &mut Group, partition: i32, now_ms: i64) -> Output {
    group.protocol = None;
    group.leader = None;
    group.transition(GroupState::Empty, now_ms);
    Output::Append { partition, records: vec![group_record(group)], group: None, generation: -1, then: Vec::new() }
}

/// Checks that `member_id` is a current member and that a static member's instance id
/// maps to it (an older instance with the same id is fenced).
fn validate_member(group: &Group, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
    if let Some(instance) = instance_id
        && let Some(current) = group.static_members.get(instance)
        && current != member_id
    {
        return Err(codes::FENCED_INSTANCE_ID);
    }
    if !group.members.contains_key(member_id) {
        return Err(codes::UNKNOWN_MEMBER_ID);
    }
    Ok(())
}

fn update_member(member: &mut Member, req: &JoinRequest, now_ms: i64) {
    member.protocols = req.protocols.clone();
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.client_id = req.client_id.clone();
    member.client_host = req.client_host.clone();
    member.last_heartbeat_ms = now_ms;
}

fn current_join_response(group: &Group, member_id: &str, with_members: bool) -> JoinResponse {
    let protocol = group.protocol.clone().unwrap_or_default();
    let is_leader = group.leader.as_deref() == Some(member_id);
    let members = if is_leader && (with_members || group.state == GroupState::CompletingRebalance) {
        group
            .members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinResponse {
        error: codes::NONE,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
        skip_assignment: is_leader && group.state == GroupState::Stable,
    }
}

fn join_error(code: i16, member_id: &str) -> JoinResponse {
    JoinResponse { error: code, generation: -1, member_id: member_id.to_string(), ..JoinResponse::default() }
}

fn sync_error(code: i16) -> SyncResponse {
    SyncResponse { error: code, ..SyncResponse::default() }
}

fn group_record(group: &Group) -> CoordinatorRecord {
    let value = GroupValue {
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        generation: group.generation,
        protocol: group.protocol.clone(),
        leader: group.leader.clone(),
        state_timestamp_ms: group.state_since_ms,
        members: group.stored_members(),
    };
    (CoordinatorKey::Group { group: group.id.clone() }.encode(), Some(value.encode()))
}

/// Tombstones for the given committed offsets of `group`.
fn offset_tombstones<'a>(group: &str, offsets: impl Iterator<Item = &'a (String, i32)>) -> Vec<CoordinatorRecord> {
    offsets
        .map(|(topic, p)| {
            let key = CoordinatorKey::Offset { group: group.to_string(), topic: topic.clone(), partition: *p };
            (key.encode(), None)
        })
        .collect()
}
