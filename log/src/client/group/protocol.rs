//! The consumer protocol: what a consumer puts in JoinGroup's metadata (its subscription)
//! and what the leader puts in SyncGroup (each member's assignment). The broker keeps both
//! opaque. Each starts with its version; a reader decodes the fields it knows and ignores
//! the rest, so members running different client versions understand each other.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use kafka_protocol::messages::consumer_protocol_subscription::{
    ConsumerProtocolSubscription, TopicPartition as OwnedTopic,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::client::admin::TopicPartition;
use crate::client::error::{ClientError, Result};
use crate::client::group::assignor::GroupAssignment;

/// The newest subscription and assignment versions understood here.
const VERSION: i16 = 3;

/// A member's subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub topics: Vec<String>,
    /// Partitions owned now (cooperative protocol; empty under eager).
    pub owned: Vec<TopicPartition>,
    /// The generation `owned` belongs to, or -1.
    pub generation: i32,
    /// A custom assignor's data (empty: none).
    pub user_data: Bytes,
}

/// Partitions grouped by topic, topics in first-seen order.
pub(crate) fn group_by_topic(partitions: &[TopicPartition]) -> Vec<(String, Vec<i32>)> {
    let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
    for TopicPartition { topic, partition: p } in partitions {
        match topics.iter_mut().find(|(t, _)| t == topic) {
            Some((_, ps)) => ps.push(*p),
            None => topics.push((topic.clone(), vec![*p])),
        }
    }
    topics
}

fn malformed(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol { addr: "group member".into(), reason: format!("malformed consumer {what}: {e}") }
}

/// Encodes a subscription (version 3).
pub(crate) fn encode_subscription(s: &Subscription) -> Bytes {
    let message = ConsumerProtocolSubscription::default()
        .with_topics(s.topics.iter().map(|t| StrBytes::from_string(t.clone())).collect())
        .with_owned_partitions(
            group_by_topic(&s.owned)
                .into_iter()
                .map(|(t, ps)| {
                    OwnedTopic::default().with_topic(TopicName(StrBytes::from_string(t))).with_partitions(ps)
                })
                .collect(),
        )
        .with_generation_id(s.generation)
        .with_user_data((!s.user_data.is_empty()).then(|| s.user_data.clone()));
    encode(&message)
}

/// Decodes a subscription of any version.
pub(crate) fn decode_subscription(bytes: &[u8]) -> Result<Subscription> {
    let message: ConsumerProtocolSubscription = decode(bytes, "subscription")?;
    Ok(Subscription {
        topics: message.topics.iter().map(|t| t.to_string()).collect(),
        owned: message
            .owned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| TopicPartition::new(t.topic.0.to_string(), *p)))
            .collect(),
        generation: message.generation_id,
        user_data: message.user_data.unwrap_or_default(),
    })
}

/// Encodes an assignment (version 3).
pub(crate) fn encode_assignment(partitions: &[TopicPartition], user_data: &Bytes) -> Bytes {
    let message = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            group_by_topic(partitions)
                .into_iter()
                .map(|(t, ps)| {
                    AssignedTopic::default().with_topic(TopicName(StrBytes::from_string(t))).with_partitions(ps)
                })
                .collect(),
        )
        .with_user_data((!user_data.is_empty()).then(|| user_data.clone()));
    encode(&message)
}

/// Decodes an assignment of any version, with its user data; empty bytes are an empty
/// assignment (a member the leader gave nothing, or a leader that sent none for it).
pub(crate) fn decode_assignment(bytes: &[u8]) -> Result<GroupAssignment> {
    if bytes.is_empty() {
        return Ok(GroupAssignment::default());
    }
    let message: ConsumerProtocolAssignment = decode(bytes, "assignment")?;
    Ok(GroupAssignment {
        partitions: message
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| TopicPartition::new(t.topic.0.to_string(), *p)))
            .collect(),
        user_data: message.user_data.unwrap_or_default(),
    })
}

fn encode<M: Encodable>(message: &M) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(VERSION);
    // Encoding plain in-memory values into a growable buffer cannot fail.
    if let Err(e) = message.encode(&mut out, VERSION) {
        tracing::error!(error = %e, "encoding a consumer protocol message failed");
    }
    out.freeze()
}

fn decode<M: Decodable>(bytes: &[u8], what: &str) -> Result<M> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err(malformed(what, "shorter than its version"));
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(malformed(what, format!("negative version {version}")));
    }
    M::decode(&mut buf, version.min(VERSION)).map_err(|e| malformed(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_and_assignments_round_trip_and_garbage_is_an_error() {
        let s = Subscription {
            topics: vec!["a".into(), "b".into()],
            owned: vec![TopicPartition::new("a", 0), TopicPartition::new("a", 2), TopicPartition::new("b", 1)],
            generation: 4,
            user_data: Bytes::from_static(b"streams"),
        };
        assert_eq!(decode_subscription(&encode_subscription(&s)).unwrap(), s);
        let assigned = GroupAssignment {
            partitions: vec![TopicPartition::new("a", 1), TopicPartition::new("b", 0)],
            user_data: Bytes::from_static(b"tasks"),
        };
        assert_eq!(decode_assignment(&encode_assignment(&assigned.partitions, &assigned.user_data)).unwrap(), assigned);
        assert_eq!(decode_assignment(&[]).unwrap(), GroupAssignment::default());
        assert!(decode_subscription(&[0]).is_err());
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 9]).is_err());
    }

    #[test]
    fn reads_a_version_0_subscription_as_kafka_wrote_it() {
        // version 0, topics ["t"], user data null
        let v0 = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
        let s = decode_subscription(&v0).unwrap();
        assert_eq!(s.topics, vec!["t".to_string()]);
        assert!(s.owned.is_empty());
    }
}
