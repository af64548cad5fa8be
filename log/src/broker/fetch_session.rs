//! Incremental fetch sessions (KIP-227), as a state machine without I/O.
//!
//! A consumer that fetches many partitions would otherwise send every partition in every
//! fetch and get every partition back, data or not. With a session the broker remembers
//! the partitions and their fetch positions: the client sends only what changed, and the
//! broker answers only partitions that have records, an error, or a new high watermark,
//! last stable offset or log start offset.
//!
//! The request's `(session_id, epoch)` picks the kind of fetch:
//!
//! | session_id | epoch | meaning |
//! |---|---|---|
//! | 0 | 0 | full fetch; open a new session from it |
//! | 0 | -1 | full fetch without a session |
//! | S | 0 | close S, then full fetch opening a new session |
//! | S | -1 | close S, then full fetch without a session |
//! | S | n > 0 | incremental fetch in S, which must expect epoch n |
//!
//! The handler calls [`FetchSessions::plan`] to learn which partitions to read, reads
//! them, then calls [`FetchSessions::complete`] with what it read to learn which partitions
//! go into the response. Partitions that were sent move to the back of the session, so
//! when `max_bytes` cuts a response short the others get their turn next time.
//!
//! The cache holds `max.incremental.fetch.session.cache.slots` sessions. A new session
//! takes the slot of one idle for [`EVICTION_IDLE_MS`], or else of the smallest session if
//! it is smaller than the new one; if neither exists the client gets session id 0 and
//! keeps sending full fetches.

use std::collections::HashMap;

use indexmap::IndexMap;

use crate::codes;
use crate::storage::TopicPartition;

/// The epoch of a request that opens a session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a request that closes (or does not want) a session.
pub const FINAL_EPOCH: i32 = -1;
/// A session unused this long may be evicted for a new one (Kafka's
/// `min.incremental.fetch.session.eviction.ms`).
pub const EVICTION_IDLE_MS: i64 = 120_000;

/// Where the client wants to read one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    /// The next offset to read.
    pub fetch_offset: i64,
    /// `partition_max_bytes`.
    pub max_bytes: i32,
    /// The leader epoch the client believes current, or -1.
    pub current_leader_epoch: i32,
}

/// What the broker read for one partition, as far as the session cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    /// Whether any record bytes are in the response.
    pub has_records: bool,
    /// The partition's error code.
    pub error_code: i16,
    /// High watermark sent.
    pub high_watermark: i64,
    /// Last stable offset sent.
    pub last_stable_offset: i64,
    /// Log start offset sent.
    pub log_start_offset: i64,
}

/// How to answer a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchKind {
    /// A full fetch that keeps no session: answer every partition, session id 0.
    Sessionless,
    /// A full fetch that opens a session if a slot can be found.
    Full,
    /// An incremental fetch in this session.
    Incremental(i32),
}

/// The partitions one fetch reads, in the order it reads them.
#[derive(Debug, Clone)]
pub struct FetchPlan {
    /// How to answer.
    pub kind: FetchKind,
    /// Every partition to read, with its position.
    pub partitions: Vec<(TopicPartition, FetchPosition)>,
}

#[derive(Debug, Clone)]
struct Cached {
    position: FetchPosition,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

impl Cached {
    fn new(position: FetchPosition) -> Self {
        // -1 for the offsets: a partition new to the session is always answered once.
        Self { position, high_watermark: -1, last_stable_offset: -1, log_start_offset: -1 }
    }

    /// Records what was read; true if the client must be told.
    fn update(&mut self, read: &ReadSummary) -> bool {
        let changed = read.has_records
            || read.error_code != codes::NONE
            || read.high_watermark != self.high_watermark
            || read.last_stable_offset != self.last_stable_offset
            || read.log_start_offset != self.log_start_offset;
        self.high_watermark = read.high_watermark;
        self.last_stable_offset = read.last_stable_offset;
        self.log_start_offset = read.log_start_offset;
        changed
    }
}

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    partitions: IndexMap<TopicPartition, Cached>,
    last_used_ms: i64,
}

/// The broker's fetch sessions.
pub struct FetchSessions {
    slots: usize,
    sessions: HashMap<i32, Session>,
    ids: Box<dyn FnMut() -> i32 + Send>,
}

impl std::fmt::Debug for FetchSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchSessions").field("slots", &self.slots).field("sessions", &self.sessions).finish()
    }
}

impl FetchSessions {
    /// A cache of at most `slots` sessions with random ids.
    pub fn new(slots: usize) -> Self {
        Self::with_id_source(slots, Box::new(|| (uuid::Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32))
    }

    /// A cache that takes session ids from `ids` (zero and ids in use are skipped), for
    /// deterministic tests.
    pub fn with_id_source(slots: usize, ids: Box<dyn FnMut() -> i32 + Send>) -> Self {
        Self { slots, sessions: HashMap::new(), ids }
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Decides what a fetch reads. `requested` are the partitions in the request (for an
    /// incremental fetch: the ones added or changed), `forgotten` those an incremental
    /// fetch drops. On error the fetch is answered with that code alone.
    pub fn plan(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: Vec<(TopicPartition, FetchPosition)>,
        forgotten: &[TopicPartition],
        now_ms: i64,
    ) -> Result<FetchPlan, i16> {
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            if session_id != 0 {
                self.sessions.remove(&session_id);
            }
            let kind = if epoch == INITIAL_EPOCH { FetchKind::Full } else { FetchKind::Sessionless };
            return Ok(FetchPlan { kind, partitions: requested });
        }
        let session = self.sessions.get_mut(&session_id).ok_or(codes::FETCH_SESSION_ID_NOT_FOUND)?;
        if epoch != session.next_epoch {
            return Err(codes::INVALID_FETCH_SESSION_EPOCH);
        }
        session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        session.last_used_ms = now_ms;
        for (tp, position) in requested {
            match session.partitions.get_mut(&tp) {
                Some(cached) => cached.position = position,
                None => {
                    session.partitions.insert(tp, Cached::new(position));
                }
            }
        }
        for tp in forgotten {
            session.partitions.shift_remove(tp);
        }
        let partitions = session.partitions.iter().map(|(tp, c)| (tp.clone(), c.position)).collect();
        Ok(FetchPlan { kind: FetchKind::Incremental(session_id), partitions })
    }

    /// Takes what was read for `plan.partitions` (same order) and returns the session id
    /// for the response and which partitions it includes.
    pub fn complete(&mut self, plan: &FetchPlan, reads: &[ReadSummary], now_ms: i64) -> (i32, Vec<bool>) {
        debug_assert_eq!(plan.partitions.len(), reads.len());
        match plan.kind {
            FetchKind::Sessionless => (0, vec![true; reads.len()]),
            FetchKind::Full => {
                let mut partitions = IndexMap::with_capacity(plan.partitions.len());
                for ((tp, position), read) in plan.partitions.iter().zip(reads) {
                    let mut cached = Cached::new(*position);
                    cached.update(read);
                    partitions.insert(tp.clone(), cached);
                }
                let size = partitions.len();
                let id = self.open(partitions, now_ms).unwrap_or(0);
                tracing::debug!(session = id, partitions = size, "full fetch; session opened (0: none)");
                (id, vec![true; reads.len()])
            }
            FetchKind::Incremental(id) => {
                let Some(session) = self.sessions.get_mut(&id) else {
                    // Evicted while the fetch waited: answer everything; the client's
                    // next incremental fetch learns the session is gone.
                    return (id, vec![true; reads.len()]);
                };
                let mut include = Vec::with_capacity(reads.len());
                let mut sent = Vec::new();
                for ((tp, _), read) in plan.partitions.iter().zip(reads) {
                    let must_send = match session.partitions.get_mut(tp) {
                        Some(cached) => cached.update(read),
                        None => true,
                    };
                    if must_send {
                        sent.push(tp);
                    }
                    include.push(must_send);
                }
                for tp in sent {
                    if let Some(cached) = session.partitions.shift_remove(tp) {
                        session.partitions.insert(tp.clone(), cached);
                    }
                }
                (id, include)
            }
        }
    }

    /// Opens a session in a free or evictable slot.
    fn open(&mut self, partitions: IndexMap<TopicPartition, Cached>, now_ms: i64) -> Option<i32> {
        if self.slots == 0 {
            return None;
        }
        if self.sessions.len() >= self.slots {
            let victim = self.evictable(partitions.len(), now_ms)?;
            tracing::debug!(session = victim, "evicting a fetch session for a new one");
            self.sessions.remove(&victim);
        }
        let id = loop {
            let id = (self.ids)();
            if id > 0 && !self.sessions.contains_key(&id) {
                break id;
            }
        };
        self.sessions.insert(id, Session { next_epoch: 1, partitions, last_used_ms: now_ms });
        Some(id)
    }

    /// The least recently used session idle for long enough, else the smallest session if
    /// it has fewer partitions than `size`.
    fn evictable(&self, size: usize, now_ms: i64) -> Option<i32> {
        let idle = self
            .sessions
            .iter()
            .filter(|(_, s)| now_ms - s.last_used_ms >= EVICTION_IDLE_MS)
            .min_by_key(|(id, s)| (s.last_used_ms, **id))
            .map(|(id, _)| *id);
        idle.or_else(|| {
            self.sessions
                .iter()
                .filter(|(_, s)| s.partitions.len() < size)
                .min_by_key(|(id, s)| (s.partitions.len(), s.last_used_ms, **id))
                .map(|(id, _)| *id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic.to_string(), partition)
    }

    fn at(offset: i64) -> FetchPosition {
        FetchPosition { fetch_offset: offset, max_bytes: 1 << 20, current_leader_epoch: -1 }
    }

    fn read(has_records: bool, hwm: i64) -> ReadSummary {
        ReadSummary {
            has_records,
            error_code: codes::NONE,
            high_watermark: hwm,
            last_stable_offset: hwm,
            log_start_offset: 0,
        }
    }

    fn counting() -> FetchSessions {
        let mut next = 0;
        FetchSessions::with_id_source(
            2,
            Box::new(move || {
                next += 1;
                next
            }),
        )
    }

    fn names(plan: &FetchPlan) -> Vec<String> {
        plan.partitions.iter().map(|(tp, p)| format!("{}-{}@{}", tp.topic, tp.partition, p.fetch_offset)).collect()
    }

    #[test]
    fn a_full_fetch_opens_a_session_and_increments_send_only_changes() {
        let mut cache = counting();
        let plan =
            cache.plan(0, 0, vec![(tp("a", 0), at(0)), (tp("a", 1), at(0)), (tp("b", 0), at(5))], &[], 0).unwrap();
        assert_eq!(plan.kind, FetchKind::Full);
        let (id, include) = cache.complete(&plan, &[read(true, 10), read(false, 0), read(false, 5)], 0);
        assert_eq!((id, include), (1, vec![true, true, true]));

        // The client advances a-0 only; the session supplies the others.
        let plan = cache.plan(1, 1, vec![(tp("a", 0), at(10))], &[], 1).unwrap();
        assert_eq!(plan.kind, FetchKind::Incremental(1));
        assert_eq!(names(&plan), ["a-0@10", "a-1@0", "b-0@5"]);
        // Nothing new anywhere: an empty response.
        let (id, include) = cache.complete(&plan, &[read(false, 10), read(false, 0), read(false, 5)], 1);
        assert_eq!((id, include), (1, vec![false, false, false]));

        // b-0's high watermark moves: only b-0 is sent, and it moves to the back.
        let plan = cache.plan(1, 2, vec![], &[], 2).unwrap();
        let (_, include) = cache.complete(&plan, &[read(false, 10), read(false, 0), read(true, 7)], 2);
        assert_eq!(include, vec![false, false, true]);
        let plan = cache.plan(1, 3, vec![(tp("b", 0), at(7))], &[], 3).unwrap();
        assert_eq!(names(&plan), ["a-0@10", "a-1@0", "b-0@7"]);

        // a-0 gets data: it rotates behind the others.
        let (_, include) = cache.complete(&plan, &[read(true, 12), read(false, 0), read(false, 7)], 3);
        assert_eq!(include, vec![true, false, false]);
        let plan = cache.plan(1, 4, vec![(tp("a", 0), at(12))], &[tp("a", 1)], 4).unwrap();
        assert_eq!(names(&plan), ["b-0@7", "a-0@12"]);
    }

    #[test]
    fn errors_and_new_partitions_are_always_sent() {
        let mut cache = counting();
        let plan = cache.plan(0, 0, vec![(tp("a", 0), at(0))], &[], 0).unwrap();
        cache.complete(&plan, &[read(false, 0)], 0);
        let plan = cache.plan(1, 1, vec![(tp("c", 3), at(0))], &[], 0).unwrap();
        let failed = ReadSummary { error_code: codes::UNKNOWN_TOPIC_OR_PARTITION, ..read(false, -1) };
        let (_, include) = cache.complete(&plan, &[read(false, 0), failed], 0);
        assert_eq!(include, vec![false, true]);
        let plan = cache.plan(1, 2, vec![], &[], 0).unwrap();
        let (_, include) = cache.complete(&plan, &[read(false, 0), failed], 0);
        assert_eq!(include, vec![false, true], "an error is repeated until the client forgets the partition");
    }

    #[test]
    fn wrong_epochs_and_unknown_sessions_are_refused() {
        let mut cache = counting();
        let plan = cache.plan(0, 0, vec![(tp("a", 0), at(0))], &[], 0).unwrap();
        cache.complete(&plan, &[read(false, 0)], 0);
        assert_eq!(cache.plan(1, 2, vec![], &[], 0).unwrap_err(), codes::INVALID_FETCH_SESSION_EPOCH);
        assert_eq!(cache.plan(7, 1, vec![], &[], 0).unwrap_err(), codes::FETCH_SESSION_ID_NOT_FOUND);
        assert_eq!(cache.plan(0, 3, vec![], &[], 0).unwrap_err(), codes::FETCH_SESSION_ID_NOT_FOUND);
        // A replayed epoch is refused too: each epoch is used once.
        cache.plan(1, 1, vec![], &[], 0).unwrap();
        assert_eq!(cache.plan(1, 1, vec![], &[], 0).unwrap_err(), codes::INVALID_FETCH_SESSION_EPOCH);
    }

    #[test]
    fn final_and_initial_epochs_close_the_session() {
        let mut cache = counting();
        let plan = cache.plan(0, 0, vec![(tp("a", 0), at(0))], &[], 0).unwrap();
        cache.complete(&plan, &[read(false, 0)], 0);
        let plan = cache.plan(1, FINAL_EPOCH, vec![(tp("a", 0), at(3))], &[], 0).unwrap();
        assert_eq!(plan.kind, FetchKind::Sessionless);
        assert_eq!(cache.complete(&plan, &[read(false, 0)], 0), (0, vec![true]));
        assert!(cache.is_empty());
        assert_eq!(cache.plan(1, 1, vec![], &[], 0).unwrap_err(), codes::FETCH_SESSION_ID_NOT_FOUND);

        let plan = cache.plan(0, 0, vec![(tp("a", 0), at(0))], &[], 0).unwrap();
        assert_eq!(cache.complete(&plan, &[read(false, 0)], 0).0, 2);
        let plan = cache.plan(2, INITIAL_EPOCH, vec![(tp("b", 0), at(0))], &[], 0).unwrap();
        assert_eq!(cache.complete(&plan, &[read(false, 0)], 0).0, 3);
        assert_eq!(cache.len(), 1, "re-opening replaced the old session");
    }

    #[test]
    fn a_full_cache_evicts_idle_then_smaller_sessions_or_goes_sessionless() {
        let mut cache = counting();
        let one = vec![(tp("a", 0), at(0))];
        let two = vec![(tp("a", 0), at(0)), (tp("a", 1), at(0))];
        for now in [0, 10] {
            let plan = cache.plan(0, 0, two.clone(), &[], now).unwrap();
            cache.complete(&plan, &[read(false, 0), read(false, 0)], now);
        }
        assert_eq!(cache.len(), 2);
        // Full, nothing idle, nothing smaller than one partition: no session.
        let plan = cache.plan(0, 0, one.clone(), &[], 20).unwrap();
        assert_eq!(cache.complete(&plan, &[read(false, 0)], 20).0, 0);
        // Once session 1 has been idle long enough, it gives way.
        let plan = cache.plan(0, 0, one.clone(), &[], EVICTION_IDLE_MS).unwrap();
        assert_eq!(cache.complete(&plan, &[read(false, 0)], EVICTION_IDLE_MS).0, 3);
        assert_eq!(cache.plan(1, 1, vec![], &[], EVICTION_IDLE_MS).unwrap_err(), codes::FETCH_SESSION_ID_NOT_FOUND);
        // A bigger session displaces the smallest one even when it is busy.
        let plan = cache.plan(0, 0, two.clone(), &[], EVICTION_IDLE_MS + 1).unwrap();
        assert_eq!(cache.complete(&plan, &[read(false, 0), read(false, 0)], EVICTION_IDLE_MS + 1).0, 4);
        assert_eq!(cache.plan(3, 1, vec![], &[], EVICTION_IDLE_MS).unwrap_err(), codes::FETCH_SESSION_ID_NOT_FOUND);
        assert_eq!(cache.plan(2, 1, vec![], &[], EVICTION_IDLE_MS).unwrap().partitions.len(), 2);
    }

    #[test]
    fn zero_slots_means_no_sessions() {
        let mut cache = FetchSessions::new(0);
        let plan = cache.plan(0, 0, vec![(tp("a", 0), at(0))], &[], 0).unwrap();
        assert_eq!(cache.complete(&plan, &[read(false, 0)], 0), (0, vec![true]));
    }
}
