//! The rebalance listener: what the application hears when partitions come and go.
//!
//! Callbacks run inside `poll`, on the application's task, before the consumer fetches
//! from the new assignment, as in Kafka. A callback that must commit or seek does it
//! through the [`RebalanceContext`] it is handed; the consumer applies those before it
//! goes on (commits synchronously, under the generation the partitions belong to).

use std::collections::HashMap;

use crate::client::admin::TopicPartition;

/// What the consumer lets a rebalance callback do.
#[derive(Debug, Default)]
pub struct RebalanceContext {
    pub(crate) positions: HashMap<TopicPartition, i64>,
    pub(crate) commits: Vec<(TopicPartition, i64)>,
    pub(crate) seeks: Vec<(TopicPartition, i64)>,
}

impl RebalanceContext {
    /// The position (next offset to read) of an assigned partition, if known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    /// Commits `offset` for `tp` before the rebalance goes on (revoked partitions: so the
    /// next owner starts after what was processed).
    pub fn commit(&mut self, tp: TopicPartition, offset: i64) {
        self.commits.push((tp, offset));
    }

    /// Starts an assigned partition at `offset` instead of its committed offset.
    pub fn seek(&mut self, tp: TopicPartition, offset: i64) {
        self.seeks.push((tp, offset));
    }
}

/// Hears about partition assignment changes of a subscribed consumer.
pub trait RebalanceListener: Send {
    /// Partitions are taken away in an orderly rebalance; the consumer can still commit
    /// their offsets. With the cooperative protocol only the partitions that move.
    fn on_partitions_revoked(&mut self, _revoked: &[TopicPartition], _ctx: &mut RebalanceContext) {}

    /// Partitions were given to this consumer; they start at their committed offsets
    /// unless the callback seeks.
    fn on_partitions_assigned(&mut self, _assigned: &[TopicPartition], _ctx: &mut RebalanceContext) {}

    /// Partitions were lost: the group moved on without this member (its session expired
    /// or it was fenced), so others may already own them and commits would be refused.
    /// By default, the same as a revocation without the chance to commit.
    fn on_partitions_lost(&mut self, lost: &[TopicPartition], ctx: &mut RebalanceContext) {
        self.on_partitions_revoked(lost, ctx);
        ctx.commits.clear();
    }
}
