//! Group membership of a subscribed consumer (Kafka's `ConsumerCoordinator`).
//!
//! - [`Membership`] holds the member id, generation and coordinator connection, shared
//!   between `poll` and the heartbeat task.
//! - The heartbeat task keeps the session alive independently of `poll`, notices when the
//!   group rebalances (or has moved on without this member) and marks a rejoin, and
//!   leaves the group if `poll` has not been called within `max.poll.interval.ms`.
//! - [`join_group`] runs JoinGroup and SyncGroup to completion, computing the assignment
//!   when this member is the leader. The consumer calls it from `poll` and applies the
//!   result (revocations, committed offsets, listener callbacks).
//! - Commits go through one committer task, so asynchronous and synchronous commits reach
//!   the coordinator in the order they were made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};

use super::config::ConsumerConfig;
use crate::client::admin::TopicPartition;
use crate::client::cluster::Cluster;
use crate::client::connection::Connection;
use crate::client::error::{ClientError, Result};
use crate::client::group::assignor::{Assignor, GroupAssignment, GroupAssignor, MemberSubscription};
use crate::client::group::protocol::{self, Subscription};
use crate::client::group::{CommitIdentity, commit_offsets, find_coordinator, is_coordinator_error, join_timeout};
use crate::codes;

/// The consumer protocol's type in JoinGroup.
const PROTOCOL_TYPE: &str = "consumer";
/// The most JoinGroup/SyncGroup rounds one rebalance may take before `poll` gives up and
/// tries again on the next call.
const MAX_JOIN_ATTEMPTS: usize = 50;

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Where this member stands in its group.
#[derive(Debug)]
pub(crate) struct MemberState {
    pub member_id: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub coordinator: Option<Arc<Connection>>,
    /// Joined and synced: heartbeats run.
    pub stable: bool,
    /// A rebalance is needed before the next fetch.
    pub rejoin: bool,
    /// The group moved on without us: our partitions are lost, not revoked.
    pub lost: bool,
    /// An error `poll` must raise (a fenced static member, say).
    pub fatal: Option<ClientError>,
    pub last_poll: Instant,
    /// As leader: the partition counts the assignment was made from, to notice changes.
    pub assigned_from: Option<BTreeMap<String, i32>>,
}

/// A member's identity and the channel its commits go through.
pub(crate) struct Membership {
    pub group_id: String,
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub assignors: Vec<Assignor>,
    /// Replaces `assignors` when set.
    pub group_assignor: Option<Arc<dyn GroupAssignor>>,
    pub state: Mutex<MemberState>,
    /// Wakes `poll` when a rebalance becomes necessary.
    pub wake_poll: Arc<Notify>,
    commits: mpsc::UnboundedSender<CommitJob>,
}

struct CommitJob {
    offsets: Vec<(TopicPartition, i64, Option<String>)>,
    identity: CommitIdentity,
    reply: Option<oneshot::Sender<Result<()>>>,
}

impl Membership {
    /// Creates the membership and starts its heartbeat and committer tasks.
    pub fn start(
        config: &ConsumerConfig,
        group_id: String,
        cluster: Arc<Cluster>,
        wake_poll: Arc<Notify>,
    ) -> Arc<Self> {
        let (commits, queue) = mpsc::unbounded_channel();
        let membership = Arc::new(Self {
            group_id,
            instance_id: config.group_instance_id.clone(),
            session_timeout: config.session_timeout,
            rebalance_timeout: config.max_poll_interval,
            heartbeat_interval: config.heartbeat_interval,
            assignors: config.assignors.clone(),
            group_assignor: config.group_assignor.clone(),
            state: Mutex::new(MemberState {
                member_id: String::new(),
                generation: -1,
                protocol: None,
                coordinator: None,
                stable: false,
                rejoin: true,
                lost: false,
                fatal: None,
                last_poll: Instant::now(),
                assigned_from: None,
            }),
            wake_poll,
            commits,
        });
        tokio::spawn(run_heartbeats(Arc::downgrade(&membership), cluster.clone()));
        tokio::spawn(run_committer(Arc::downgrade(&membership), cluster, queue));
        membership
    }

    /// Whether all configured assignors are cooperative (then the group is too).
    pub fn cooperative(&self) -> bool {
        self.group_assignor.is_none() && self.assignors.iter().all(|a| a.is_cooperative())
    }

    /// The generation and member id commits are made under.
    pub fn identity(&self) -> CommitIdentity {
        let state = self.state.lock();
        if state.generation < 0 {
            return CommitIdentity::standalone();
        }
        CommitIdentity {
            generation: state.generation,
            member_id: state.member_id.clone(),
            group_instance_id: self.instance_id.clone(),
        }
    }

    /// Queues a commit; the answer comes through the returned receiver. Commits reach the
    /// coordinator in the order they are queued.
    pub fn commit(
        &self,
        offsets: Vec<(TopicPartition, i64, Option<String>)>,
        identity: CommitIdentity,
    ) -> oneshot::Receiver<Result<()>> {
        let (reply, answer) = oneshot::channel();
        let job = CommitJob { offsets, identity, reply: Some(reply) };
        if let Err(mpsc::error::SendError(job)) = self.commits.send(job)
            && let Some(reply) = job.reply
        {
            let _ = reply.send(Err(ClientError::Closed("the consumer is closed")));
        }
        answer
    }

    /// The coordinator connection, looking it up if needed.
    pub async fn coordinator(&self, cluster: &Cluster) -> Result<Arc<Connection>> {
        if let Some(c) = self.state.lock().coordinator.clone().filter(|c| !c.is_closed()) {
            return Ok(c);
        }
        let connection = find_coordinator(cluster, &self.group_id).await?;
        self.state.lock().coordinator = Some(connection.clone());
        Ok(connection)
    }

    fn forget_coordinator(&self) {
        self.state.lock().coordinator = None;
    }

    /// OffsetFetch through the coordinator, retried while the coordinator is loading,
    /// moving or unreachable (COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, ...), as Kafka's
    /// consumer retries it, for at most `timeout`.
    pub async fn committed_offsets(
        &self,
        cluster: &Cluster,
        partitions: &[TopicPartition],
        timeout: std::time::Duration,
    ) -> Result<Vec<(TopicPartition, Option<crate::client::group::CommittedOffset>)>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let attempt = async {
                let connection = self.coordinator(cluster).await?;
                crate::client::group::fetch_offsets(&connection, &self.group_id, Some(partitions)).await
            };
            match attempt.await {
                Ok(offsets) => return Ok(offsets),
                Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(group = %self.group_id, error = %e, "committed offsets not available yet; retrying");
                    if matches!(&e, ClientError::Broker { code, .. } if *code != codes::COORDINATOR_LOAD_IN_PROGRESS) {
                        self.forget_coordinator();
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends LeaveGroup (not for static members: they keep their place for a restart
    /// within the session timeout) and forgets the generation.
    pub async fn leave(&self, cluster: &Cluster) {
        let (member_id, stable) = {
            let state = self.state.lock();
            (state.member_id.clone(), state.generation >= 0)
        };
        if self.instance_id.is_none()
            && !member_id.is_empty()
            && stable
            && let Ok(connection) = self.coordinator(cluster).await
        {
            let mut request = LeaveGroupRequest::default().with_group_id(GroupId(str(&self.group_id)));
            // v3 moved the member into a list (so a request can name several).
            if connection.version(ApiKey::LeaveGroup).is_ok_and(|v| v >= 3) {
                request.members = vec![MemberIdentity::default().with_member_id(str(&member_id))];
            } else {
                request.member_id = str(&member_id);
            }
            let r = connection.send(&request).await;
            if let Err(e) = r {
                tracing::debug!(group = %self.group_id, error = %e, "LeaveGroup failed; the session will expire instead");
            }
        }
        let mut state = self.state.lock();
        state.member_id.clear();
        state.generation = -1;
        state.stable = false;
        state.rejoin = true;
    }

    /// Marks that the group must be rejoined (a commit or heartbeat found the generation
    /// stale), and whether our partitions are lost rather than to be revoked.
    pub fn request_rejoin(&self, code: i16) {
        let mut state = self.state.lock();
        state.rejoin = true;
        state.stable = false;
        match code {
            codes::UNKNOWN_MEMBER_ID => {
                state.member_id.clear();
                state.generation = -1;
                state.lost = true;
            }
            codes::ILLEGAL_GENERATION => {
                state.generation = -1;
                state.lost = true;
            }
            codes::FENCED_INSTANCE_ID => {
                state.fatal = Some(ClientError::Broker {
                    code,
                    context: format!("group '{}'", self.group_id),
                    message: Some(format!(
                        "another consumer joined with group.instance.id '{}'",
                        self.instance_id.as_deref().unwrap_or_default()
                    )),
                });
            }
            _ => {}
        }
        drop(state);
        self.wake_poll.notify_one();
    }
}

/// The outcome of a completed join.
pub(crate) struct Joined {
    pub generation: i32,
    pub protocol: String,
    pub assignment: Vec<TopicPartition>,
}

impl Membership {
    /// The protocol names offered in JoinGroup, in order of preference.
    fn protocol_names(&self) -> Vec<String> {
        match &self.group_assignor {
            Some(custom) => vec![custom.name().to_string()],
            None => self.assignors.iter().map(|a| a.name().to_string()).collect(),
        }
    }
}

/// Runs JoinGroup and SyncGroup until this member has an assignment for a new generation.
/// `topics` is the subscription; `owned` the partitions kept through a cooperative
/// rebalance.
pub(crate) async fn join_group(
    membership: &Membership,
    cluster: &Cluster,
    topics: &[String],
    owned: &[TopicPartition],
) -> Result<Joined> {
    let mut last_error = None;
    for _ in 0..MAX_JOIN_ATTEMPTS {
        match join_once(membership, cluster, topics, owned).await {
            Ok(joined) => return Ok(joined),
            Err(e) => {
                let code = e.code();
                let retry = e.is_retriable()
                    || matches!(
                        code,
                        Some(
                            codes::MEMBER_ID_REQUIRED
                                | codes::UNKNOWN_MEMBER_ID
                                | codes::ILLEGAL_GENERATION
                                | codes::REBALANCE_IN_PROGRESS
                        )
                    );
                if !retry {
                    return Err(e);
                }
                if code.is_some_and(is_coordinator_error) || code.is_none() {
                    membership.forget_coordinator();
                }
                if code != Some(codes::MEMBER_ID_REQUIRED) && code != Some(codes::REBALANCE_IN_PROGRESS) {
                    tokio::time::sleep(cluster.config.retry_backoff).await;
                }
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or(ClientError::Closed("rebalance did not complete")))
}

async fn join_once(
    membership: &Membership,
    cluster: &Cluster,
    topics: &[String],
    owned: &[TopicPartition],
) -> Result<Joined> {
    let connection = membership.coordinator(cluster).await?;
    let group = membership.group_id.as_str();
    let (member_id, generation) = {
        let state = membership.state.lock();
        (state.member_id.clone(), state.generation)
    };
    let subscription = protocol::encode_subscription(&Subscription {
        topics: topics.to_vec(),
        owned: if membership.cooperative() { owned.to_vec() } else { Vec::new() },
        generation,
        user_data: membership.group_assignor.as_ref().map(|a| a.subscription_user_data()).unwrap_or_default(),
    });
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_session_timeout_ms(membership.session_timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_rebalance_timeout_ms(membership.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_member_id(str(&member_id))
        .with_group_instance_id(membership.instance_id.as_deref().map(str))
        .with_protocol_type(str(PROTOCOL_TYPE))
        .with_protocols(
            membership
                .protocol_names()
                .iter()
                .map(|name| {
                    JoinGroupRequestProtocol::default().with_name(str(name)).with_metadata(subscription.clone())
                })
                .collect(),
        );
    let response =
        connection.begin(&request).await?.with_timeout(join_timeout(membership.rebalance_timeout)).wait().await?;
    let context = format!("joining group '{group}'");
    if response.error_code != codes::NONE {
        let mut state = membership.state.lock();
        match response.error_code {
            codes::MEMBER_ID_REQUIRED => state.member_id = response.member_id.to_string(),
            codes::UNKNOWN_MEMBER_ID => {
                state.member_id.clear();
                state.generation = -1;
            }
            codes::FENCED_INSTANCE_ID => {}
            _ => {}
        }
        return Err(ClientError::Broker { code: response.error_code, context, message: None });
    }
    let my_id = response.member_id.to_string();
    let protocol_name = response.protocol_name.as_ref().map(|p| p.to_string()).unwrap_or_default();
    let generation = response.generation_id;
    {
        let mut state = membership.state.lock();
        state.member_id = my_id.clone();
        state.protocol = Some(protocol_name.clone());
    }
    let assignments = if response.leader.as_str() == my_id && !response.skip_assignment {
        let members: Vec<(String, Option<String>, bytes::Bytes)> = response
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string()), m.metadata.clone()))
            .collect();
        lead_assignment(membership, cluster, &protocol_name, &members).await?
    } else {
        Vec::new()
    };
    let version = connection.version(ApiKey::SyncGroup)?;
    let mut sync = SyncGroupRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_generation_id(generation)
        .with_member_id(str(&my_id))
        .with_group_instance_id(membership.instance_id.as_deref().map(str))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(member, bytes)| {
                    SyncGroupRequestAssignment::default().with_member_id(str(&member)).with_assignment(bytes)
                })
                .collect(),
        );
    if version >= 5 {
        sync = sync.with_protocol_type(Some(str(PROTOCOL_TYPE))).with_protocol_name(Some(str(&protocol_name)));
    }
    let synced = connection.begin(&sync).await?.with_timeout(join_timeout(membership.rebalance_timeout)).wait().await?;
    if synced.error_code != codes::NONE {
        if matches!(synced.error_code, codes::UNKNOWN_MEMBER_ID) {
            let mut state = membership.state.lock();
            state.member_id.clear();
            state.generation = -1;
        }
        return Err(ClientError::Broker {
            code: synced.error_code,
            context: format!("syncing group '{group}'"),
            message: None,
        });
    }
    let assignment = protocol::decode_assignment(&synced.assignment)?;
    if let Some(custom) = &membership.group_assignor {
        custom.on_assignment(&assignment, generation);
    }
    Ok(Joined { generation, protocol: protocol_name, assignment: assignment.partitions })
}

/// The leader's work: decode every member's subscription, look up the partitions of the
/// subscribed topics, and run the chosen assignor.
async fn lead_assignment(
    membership: &Membership,
    cluster: &Cluster,
    protocol_name: &str,
    members: &[(String, Option<String>, bytes::Bytes)],
) -> Result<Vec<(String, bytes::Bytes)>> {
    let custom = membership.group_assignor.as_ref().filter(|a| a.name() == protocol_name);
    let assignor = Assignor::from_name(protocol_name);
    if custom.is_none() && assignor.is_none() {
        return Err(ClientError::config(
            "partition.assignment.strategy",
            protocol_name,
            "the group chose an assignor this client does not have",
        ));
    }
    let mut subscriptions = Vec::with_capacity(members.len());
    let mut topics: Vec<String> = Vec::new();
    for (member_id, instance_id, metadata) in members {
        let s = protocol::decode_subscription(metadata)?;
        for t in &s.topics {
            if !topics.contains(t) {
                topics.push(t.clone());
            }
        }
        subscriptions.push(MemberSubscription {
            member_id: member_id.clone(),
            group_instance_id: instance_id.clone(),
            topics: s.topics,
            owned: s.owned,
            generation: s.generation,
            user_data: s.user_data,
        });
    }
    cluster.refresh(Some(&topics)).await?;
    let counts: BTreeMap<String, i32> = topics
        .iter()
        .filter_map(|t| cluster.cached_topic(t).map(|info| (t.clone(), info.partitions.len() as i32)))
        .collect();
    let assigned: BTreeMap<String, GroupAssignment> = match (custom, assignor) {
        (Some(custom), _) => custom.assign(&subscriptions, &counts)?,
        (None, Some(assignor)) => assignor
            .assign(&subscriptions, &counts)
            .into_iter()
            .map(|(member, partitions)| (member, GroupAssignment { partitions, user_data: bytes::Bytes::new() }))
            .collect(),
        (None, None) => BTreeMap::new(),
    };
    tracing::debug!(group = %membership.group_id, members = members.len(), partitions = counts.values().sum::<i32>(), "assigned partitions as leader");
    membership.state.lock().assigned_from = Some(counts);
    Ok(assigned
        .into_iter()
        .map(|(member, a)| (member, protocol::encode_assignment(&a.partitions, &a.user_data)))
        .collect())
}

async fn run_heartbeats(membership: std::sync::Weak<Membership>, cluster: Arc<Cluster>) {
    loop {
        let interval = match membership.upgrade() {
            Some(m) => m.heartbeat_interval,
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(m) = membership.upgrade() else { return };
        let (stable, member_id, generation, last_poll) = {
            let state = m.state.lock();
            (state.stable && !state.rejoin, state.member_id.clone(), state.generation, state.last_poll)
        };
        if !stable {
            continue;
        }
        if last_poll.elapsed() > m.rebalance_timeout {
            tracing::warn!(
                group = %m.group_id,
                max_poll_interval_ms = m.rebalance_timeout.as_millis() as u64,
                "poll was not called within max.poll.interval.ms; leaving the group so others can take over"
            );
            m.leave(&cluster).await;
            m.state.lock().lost = true;
            m.wake_poll.notify_one();
            continue;
        }
        let connection = match m.coordinator(&cluster).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(group = %m.group_id, error = %e, "no coordinator for the heartbeat");
                continue;
            }
        };
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str(&m.group_id)))
            .with_generation_id(generation)
            .with_member_id(str(&member_id))
            .with_group_instance_id(m.instance_id.as_deref().map(str));
        match connection.send(&request).await {
            Ok(r) if r.error_code == codes::NONE => {}
            Ok(r) if is_coordinator_error(r.error_code) => m.forget_coordinator(),
            Ok(r) => {
                tracing::info!(group = %m.group_id, code = r.error_code, "heartbeat asks for a rejoin");
                m.request_rejoin(r.error_code);
            }
            Err(e) => {
                tracing::debug!(group = %m.group_id, error = %e, "heartbeat failed");
                m.forget_coordinator();
            }
        }
    }
}

async fn run_committer(
    membership: std::sync::Weak<Membership>,
    cluster: Arc<Cluster>,
    mut queue: mpsc::UnboundedReceiver<CommitJob>,
) {
    while let Some(mut job) = queue.recv().await {
        let Some(m) = membership.upgrade() else { return };
        let result = commit_with_retries(&m, &cluster, &job).await;
        if let Err(e) = &result
            && let Some(code) = e.code()
            && matches!(
                code,
                codes::ILLEGAL_GENERATION
                    | codes::UNKNOWN_MEMBER_ID
                    | codes::REBALANCE_IN_PROGRESS
                    | codes::FENCED_INSTANCE_ID
            )
        {
            m.request_rejoin(code);
        }
        if let Some(reply) = job.reply.take() {
            let _ = reply.send(result);
        }
    }
}

/// Commits, looking the coordinator up again after coordinator errors and disconnects,
/// within `request.timeout.ms`.
async fn commit_with_retries(m: &Membership, cluster: &Cluster, job: &CommitJob) -> Result<()> {
    let deadline = Instant::now() + cluster.config.request_timeout;
    loop {
        let attempt = async {
            let connection = m.coordinator(cluster).await?;
            let results = commit_offsets(&connection, &m.group_id, &job.identity, &job.offsets).await?;
            results.into_iter().try_for_each(|(_, r)| r)
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                if e.code().is_none_or(is_coordinator_error) {
                    m.forget_coordinator();
                }
                tokio::time::sleep(cluster.config.retry_backoff).await;
            }
            Err(e) => return Err(e),
        }
    }
}
