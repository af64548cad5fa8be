//! The records the group coordinator keeps in `__consumer_offsets`, in Kafka's own schemas,
//! so that tools which read that topic (and our compaction, which keys on the record key)
//! see what they would see on a Kafka cluster.
//!
//! - offset commit: key v1 `(group, topic, partition)`, value v3 `(offset, leader epoch,
//!   metadata, commit timestamp)`;
//! - group metadata: key v2 `(group)`, value v3 (protocol type, generation, protocol,
//!   leader, state timestamp, members with their subscription and assignment bytes).
//!
//! A null value is a tombstone: the offset or the group was deleted.
//!
//! ```
//! use freshet_log::broker::group::records::{CoordinatorKey, OffsetValue};
//!
//! let key = CoordinatorKey::Offset { group: "g".into(), topic: "t".into(), partition: 3 };
//! let value = OffsetValue { offset: 42, leader_epoch: -1, metadata: "m".into(), commit_timestamp_ms: 7 };
//! assert_eq!(CoordinatorKey::decode(&key.encode()).unwrap(), key);
//! assert_eq!(OffsetValue::decode(&value.encode()).unwrap(), value);
//! ```

use bytes::Bytes;

/// Why a `__consumer_offsets` record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {position}: {reason}")]
pub struct RecordDecodeError {
    /// Which record part was being read.
    pub what: &'static str,
    /// Byte position in that part.
    pub position: usize,
    /// What was wrong.
    pub reason: String,
}

/// A `__consumer_offsets` record key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CoordinatorKey {
    /// A committed offset.
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A group's membership and assignment.
    Group {
        /// Group id.
        group: String,
    },
}

impl CoordinatorKey {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            Self::Offset { group, .. } | Self::Group { group } => group,
        }
    }

    /// The key bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Self::Offset { group, topic, partition } => {
                w.i16(1);
                w.string(group);
                w.string(topic);
                w.i32(*partition);
            }
            Self::Group { group } => {
                w.i16(2);
                w.string(group);
            }
        }
        w.0
    }

    /// Parses key bytes (versions 0 and 1 are offsets, 2 is group metadata).
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        let mut r = Reader::new("key", bytes);
        let key = match r.i16()? {
            0 | 1 => Self::Offset { group: r.string()?, topic: r.string()?, partition: r.i32()? },
            2 => Self::Group { group: r.string()? },
            v => return Err(r.error(format!("unknown key version {v}"))),
        };
        Ok(key)
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// The committer's metadata string.
    pub metadata: String,
    /// When the commit was accepted.
    pub commit_timestamp_ms: i64,
}

impl OffsetValue {
    /// Value bytes, version 3.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.i16(3);
        w.i64(self.offset);
        w.i32(self.leader_epoch);
        w.string(&self.metadata);
        w.i64(self.commit_timestamp_ms);
        w.0
    }

    /// Parses value bytes of versions 0 to 3.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        let mut r = Reader::new("offset value", bytes);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(r.error(format!("unknown offset value version {version}")));
        }
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.string()?;
        let commit_timestamp_ms = r.i64()?;
        if version == 1 {
            r.i64()?; // expire timestamp: retention is the broker's decision since KIP-211
        }
        Ok(Self { offset, leader_epoch, metadata, commit_timestamp_ms })
    }
}

/// A member as stored in group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// The member's metadata for the chosen protocol (opaque).
    pub subscription: Bytes,
    /// Its assignment (opaque).
    pub assignment: Bytes,
}

/// A group's membership after a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// Protocol type, `consumer` for consumer groups.
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// The chosen protocol (assignor).
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// When the group entered its current state.
    pub state_timestamp_ms: i64,
    /// Members.
    pub members: Vec<StoredMember>,
}

impl GroupValue {
    /// Value bytes, version 3.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.i16(3);
        w.string(&self.protocol_type);
        w.i32(self.generation);
        w.nullable_string(self.protocol.as_deref());
        w.nullable_string(self.leader.as_deref());
        w.i64(self.state_timestamp_ms);
        w.i32(self.members.len() as i32);
        for m in &self.members {
            w.string(&m.member_id);
            w.nullable_string(m.group_instance_id.as_deref());
            w.string(&m.client_id);
            w.string(&m.client_host);
            w.i32(m.rebalance_timeout_ms);
            w.i32(m.session_timeout_ms);
            w.bytes(&m.subscription);
            w.bytes(&m.assignment);
        }
        w.0
    }

    /// Parses value bytes of versions 0 to 3.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        let mut r = Reader::new("group value", bytes);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(r.error(format!("unknown group value version {version}")));
        }
        let protocol_type = r.string()?;
        let generation = r.i32()?;
        let protocol = r.nullable_string()?;
        let leader = r.nullable_string()?;
        let state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
        let count = r.i32()?;
        if count < 0 {
            return Err(r.error(format!("negative member count {count}")));
        }
        let mut members = Vec::new();
        for _ in 0..count {
            let member_id = r.string()?;
            let group_instance_id = if version >= 3 { r.nullable_string()? } else { None };
            let client_id = r.string()?;
            let client_host = r.string()?;
            let session_timeout_ms_v0 = r.i32()?;
            let (rebalance_timeout_ms, session_timeout_ms) = if version >= 1 {
                (session_timeout_ms_v0, r.i32()?)
            } else {
                (session_timeout_ms_v0, session_timeout_ms_v0)
            };
            let subscription = Bytes::copy_from_slice(r.bytes()?);
            let assignment = Bytes::copy_from_slice(r.bytes()?);
            members.push(StoredMember {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription,
                assignment,
            });
        }
        Ok(Self { protocol_type, generation, protocol, leader, state_timestamp_ms, members })
    }
}

/// The topics in a consumer-protocol subscription (`ConsumerProtocolSubscription`, any
/// version: they all start with the topic list). The broker reads them only to know which
/// topics a group still consumes, for offset expiry and OffsetDelete, as Kafka does.
pub fn subscribed_topics(subscription: &[u8]) -> Result<Vec<String>, RecordDecodeError> {
    let mut r = Reader::new("consumer subscription", subscription);
    let version = r.i16()?;
    if version < 0 {
        return Err(r.error(format!("negative subscription version {version}")));
    }
    let count = r.i32()?;
    if count < 0 {
        return Err(r.error(format!("negative topic count {count}")));
    }
    (0..count).map(|_| r.string()).collect()
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn string(&mut self, s: &str) {
        // Group ids, topics and member ids are bounded far below i16::MAX by validation.
        let len = s.len().min(i16::MAX as usize);
        self.i16(len as i16);
        self.0.extend_from_slice(&s.as_bytes()[..len]);
    }
    fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.i16(-1),
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self { what, bytes, at: 0 }
    }

    fn error(&self, reason: impl Into<String>) -> RecordDecodeError {
        RecordDecodeError { what: self.what, position: self.at, reason: reason.into() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordDecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| self.error(format!("needs {n} more bytes but {} remain", self.bytes.len() - self.at)))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, RecordDecodeError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }
    fn i32(&mut self) -> Result<i32, RecordDecodeError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn i64(&mut self) -> Result<i64, RecordDecodeError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }

    fn nullable_string(&mut self) -> Result<Option<String>, RecordDecodeError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let raw = self.take(len as usize)?;
        let s = std::str::from_utf8(raw).map_err(|e| self.error(format!("string is not UTF-8: {e}")))?;
        Ok(Some(s.to_string()))
    }

    fn string(&mut self) -> Result<String, RecordDecodeError> {
        self.nullable_string()?.ok_or_else(|| self.error("null where a string is required"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], RecordDecodeError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(&[]);
        }
        self.take(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_values_round_trip_and_truncation_is_an_error_naming_the_position() {
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp_ms: 1_700_000_000_000,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                group_instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"assign"),
            }],
        };
        let bytes = value.encode();
        assert_eq!(GroupValue::decode(&bytes).unwrap(), value);
        for cut in [1, 5, bytes.len() - 1] {
            let err = GroupValue::decode(&bytes[..cut]).unwrap_err();
            assert_eq!(err.what, "group value");
            assert!(err.reason.contains("more bytes"), "{err}");
        }
        let err = CoordinatorKey::decode(&[0, 9, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("unknown key version 9"), "{err}");
    }

    #[test]
    fn reads_kafkas_older_offset_value_versions() {
        // v1: offset, metadata, commit timestamp, expire timestamp.
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&5i64.to_be_bytes());
        v1.extend_from_slice(&[0, 2, b'h', b'i']);
        v1.extend_from_slice(&9i64.to_be_bytes());
        v1.extend_from_slice(&99i64.to_be_bytes());
        let value = OffsetValue::decode(&v1).unwrap();
        assert_eq!(value, OffsetValue { offset: 5, leader_epoch: -1, metadata: "hi".into(), commit_timestamp_ms: 9 });
    }

    #[test]
    fn subscription_topics_are_read_from_the_consumer_protocol() {
        let mut sub = vec![0, 1, 0, 0, 0, 2];
        for t in ["a", "bb"] {
            sub.extend_from_slice(&(t.len() as i16).to_be_bytes());
            sub.extend_from_slice(t.as_bytes());
        }
        sub.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // null user data
        assert_eq!(subscribed_topics(&sub).unwrap(), vec!["a".to_string(), "bb".to_string()]);
        assert!(subscribed_topics(&sub[..7]).is_err());
    }
}
