//! What DescribeQuorum reports: who leads the metadata log and in which term, how much of
//! it has committed, and how far each voter and observer has replicated it.
//!
//! Offsets here count the metadata log's Raft entries (one entry holds the records of one
//! controller request), and a log end offset is one past the last entry, as in Kafka. The
//! leader learns what each replica holds from openraft's replication metrics; when it last
//! saw a replica hold everything it had is tracked here, as openraft does not keep it.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::{RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::QuorumError;
use crate::time::{Clock, SystemClock};

/// One replica of the metadata log, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumReplica {
    /// Its node id.
    pub node_id: u64,
    /// One past the last entry the leader knows it holds; -1 when unknown.
    pub log_end_offset: i64,
    /// When (epoch ms) the leader last saw it hold every entry the leader had; -1: never.
    pub last_caught_up_ms: i64,
}

/// The state of the metadata quorum, from its leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    /// The active controller.
    pub leader_id: u64,
    /// Its Raft term (Kafka's leader epoch of the metadata log).
    pub leader_epoch: u64,
    /// One past the last entry applied on the leader: the committed end of the log.
    pub high_watermark: i64,
    /// The voters, by id; the leader among them.
    pub voters: Vec<QuorumReplica>,
    /// Replicas that follow the log without voting.
    pub observers: Vec<QuorumReplica>,
}

impl QuorumDescription {
    /// The leader's own entry.
    pub fn leader(&self) -> Option<&QuorumReplica> {
        self.voters.iter().find(|v| v.node_id == self.leader_id)
    }
}

/// When each replica was last seen caught up with the leader, in epoch ms.
pub(super) type CaughtUp = Arc<parking_lot::Mutex<BTreeMap<u64, i64>>>;

/// Notes, on every change of the metrics while this node leads, which replicas hold every
/// entry it has. Ends when Raft stops.
pub(super) async fn track_caught_up(
    mut metrics: watch::Receiver<RaftMetrics<u64, openraft::BasicNode>>,
    caught_up: CaughtUp,
) {
    while metrics.changed().await.is_ok() {
        let m = metrics.borrow_and_update();
        let (Some(replication), Some(last)) = (&m.replication, m.last_log_index) else {
            continue;
        };
        let now = wall_clock_ms();
        let mut seen = caught_up.lock();
        for (id, matched) in replication {
            if matched.is_some_and(|l| l.index >= last) {
                seen.insert(*id, now);
            }
        }
    }
}

/// The description of the quorum `metrics` belong to, if they are the leader's.
pub(super) fn describe(
    metrics: &RaftMetrics<u64, openraft::BasicNode>,
    caught_up: &BTreeMap<u64, i64>,
) -> Result<QuorumDescription, QuorumError> {
    let (ServerState::Leader, Some(replication)) = (metrics.state, &metrics.replication) else {
        return Err(QuorumError::NotController { leader: metrics.current_leader });
    };
    let end = |index: Option<u64>| index.map_or(0, |i| i as i64 + 1);
    let leader_end = end(metrics.last_log_index);
    let now = wall_clock_ms();
    let replica = |id: u64| {
        let log_end_offset = if id == metrics.id {
            leader_end
        } else {
            replication.get(&id).copied().flatten().map_or(-1, |matched| matched.index as i64 + 1)
        };
        let last_caught_up_ms = if log_end_offset == leader_end { now } else { *caught_up.get(&id).unwrap_or(&-1) };
        QuorumReplica { node_id: id, log_end_offset, last_caught_up_ms }
    };
    let membership = metrics.membership_config.membership();
    Ok(QuorumDescription {
        leader_id: metrics.id,
        leader_epoch: metrics.current_term,
        high_watermark: end(metrics.last_applied.map(|l| l.index)),
        voters: membership.voter_ids().map(replica).collect(),
        observers: membership.learner_ids().map(replica).collect(),
    })
}

fn wall_clock_ms() -> i64 {
    SystemClock.now_ms()
}
