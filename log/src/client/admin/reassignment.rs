//! Moving replicas and leaders (Kafka's `alterPartitionReassignments`,
//! `listPartitionReassignments` and `electLeaders`).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest, ListPartitionReassignmentsRequest,
};

use super::{AdminClient, TopicPartition, broker_error, topic_name};
use crate::client::error::Result;

/// A reassignment under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReassignment {
    /// The partition.
    pub partition: TopicPartition,
    /// Every replica it has now: the targets first, then those being removed.
    pub replicas: Vec<i32>,
    /// Replicas catching up to join.
    pub adding_replicas: Vec<i32>,
    /// Replicas that leave once every target replica is in sync.
    pub removing_replicas: Vec<i32>,
}

/// Which leader `elect_leaders` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// The first (preferred) replica, when it is in sync.
    Preferred,
    /// For a partition without a leader: any live replica, even one out of sync, at the
    /// risk of losing what only the lost in-sync replicas had.
    Unclean,
}

/// Partitions grouped by topic, in order.
fn by_topic(partitions: impl IntoIterator<Item = TopicPartition>) -> BTreeMap<String, Vec<i32>> {
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(tp.topic).or_default().push(tp.partition);
    }
    topics
}

impl AdminClient {
    /// Moves each partition to its target replicas, or, for `None`, cancels the
    /// reassignment under way. The controller returns once each has started; data moves
    /// in the background (see [`AdminClient::list_partition_reassignments`]).
    /// `allow_replication_factor_change` (KIP-860) lets a target have another replica count.
    pub async fn alter_partition_reassignments(
        &self,
        targets: &[(TopicPartition, Option<Vec<i32>>)],
        allow_replication_factor_change: bool,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for (tp, target) in targets {
            let replicas = target.as_ref().map(|r| r.iter().map(|b| BrokerId(*b)).collect());
            let partition = ReassignablePartition::default().with_partition_index(tp.partition).with_replicas(replicas);
            topics.entry(&tp.topic).or_default().push(partition);
        }
        let topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                ReassignableTopic::default().with_name(topic_name(name)).with_partitions(partitions)
            })
            .collect();
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout_ms)
            .with_allow_replication_factor_change(allow_replication_factor_change)
            .with_topics(topics);
        let response = self.cluster.any().await?.send(&request).await?;
        let context = "reassigning partitions";
        if let Some(e) = broker_error(response.error_code, context, response.error_message.as_ref()) {
            return Err(e);
        }
        let mut results = Vec::new();
        for t in &response.responses {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                let context = format!("reassigning {}-{}", tp.topic, tp.partition);
                results.push((tp, broker_error(p.error_code, context, p.error_message.as_ref()).map_or(Ok(()), Err)));
            }
        }
        Ok(results)
    }

    /// The reassignments under way, of the partitions named or (`None`) of all.
    pub async fn list_partition_reassignments(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<PartitionReassignment>> {
        let topics = partitions.map(|ps| {
            by_topic(ps.iter().cloned())
                .into_iter()
                .map(|(name, indexes)| {
                    ListPartitionReassignmentsTopics::default()
                        .with_name(topic_name(&name))
                        .with_partition_indexes(indexes)
                })
                .collect()
        });
        let request = ListPartitionReassignmentsRequest::default().with_timeout_ms(self.timeout_ms).with_topics(topics);
        let response = self.cluster.any().await?.send(&request).await?;
        let context = "listing partition reassignments";
        if let Some(e) = broker_error(response.error_code, context, response.error_message.as_ref()) {
            return Err(e);
        }
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect();
        Ok(response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| PartitionReassignment {
                    partition: TopicPartition::new(t.name.0.to_string(), p.partition_index),
                    replicas: ids(&p.replicas),
                    adding_replicas: ids(&p.adding_replicas),
                    removing_replicas: ids(&p.removing_replicas),
                })
            })
            .collect())
    }

    /// Elects leaders for the partitions named or, with `None`, for every partition (then
    /// only those that needed an election are reported).
    pub async fn elect_leaders(
        &self,
        election: ElectionType,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let topic_partitions = partitions.map(|ps| {
            by_topic(ps.iter().cloned())
                .into_iter()
                .map(|(name, indexes)| {
                    TopicPartitions::default().with_topic(topic_name(&name)).with_partitions(indexes)
                })
                .collect()
        });
        let election_type = match election {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        };
        let request = ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_topic_partitions(topic_partitions)
            .with_timeout_ms(self.timeout_ms);
        let connection = self.cluster.any().await?;
        let response = connection.send(&request).await?;
        if let Some(e) = broker_error(response.error_code, "electing leaders", None) {
            return Err(e);
        }
        let mut results = Vec::new();
        for t in &response.replica_election_results {
            for p in &t.partition_result {
                let tp = TopicPartition::new(t.topic.0.to_string(), p.partition_id);
                let context = format!("electing a leader for {}-{}", tp.topic, tp.partition);
                results.push((tp, broker_error(p.error_code, context, p.error_message.as_ref()).map_or(Ok(()), Err)));
            }
        }
        Ok(results)
    }
}
