//! The record accumulator: records wait here, grouped into one batch per partition, until
//! the batch is full, `linger.ms` has passed, or a flush asks for everything.
//!
//! It is pure data: no I/O and no clock of its own (callers pass `now`), so its rules are
//! tested directly. The sender drains ready batches, one per partition per request, and
//! gives each back as acknowledged, failed or to be retried.
//!
//! Order per partition: a batch to retry goes back in front of the partition's newer
//! batches, and the partition sends nothing more until every batch it had in flight has
//! come back; then it resumes from the oldest. With idempotence, sequence numbers are
//! handed out when a batch is first drained, and re-handed (contiguously from the last
//! acknowledged one) when a batch that was never written is dropped, so the broker sees
//! no gap.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::client::error::ClientError;
use crate::record::batch::BatchMut;
use crate::record::{Compression, Header, RecordBatchBuilder};

/// What the broker said about a written batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchAck {
    /// The offset of the batch's first record, or -1 with `acks=0`.
    pub base_offset: i64,
    /// The broker's timestamp with LogAppendTime topics, else -1.
    pub log_append_time: i64,
}

/// The outcome of one batch, shared by the delivery futures of its records.
#[derive(Debug, Default)]
pub(crate) struct BatchCompletion {
    outcome: OnceLock<Result<BatchAck, ClientError>>,
    wakers: Mutex<Vec<Waker>>,
}

impl BatchCompletion {
    pub(crate) fn outcome(&self) -> Option<&Result<BatchAck, ClientError>> {
        self.outcome.get()
    }

    /// Registers `waker` unless the outcome is already known; returns the outcome if so.
    pub(crate) fn poll_outcome(&self, waker: &Waker) -> Option<&Result<BatchAck, ClientError>> {
        if let Some(outcome) = self.outcome.get() {
            return Some(outcome);
        }
        let mut wakers = self.wakers.lock();
        // Checked again under the lock: `complete` sets the outcome before taking it.
        if let Some(outcome) = self.outcome.get() {
            return Some(outcome);
        }
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
        None
    }

    fn complete(&self, outcome: Result<BatchAck, ClientError>) {
        let _ = self.outcome.set(outcome);
        for waker in std::mem::take(&mut *self.wakers.lock()) {
            waker.wake();
        }
    }
}

/// One batch of records for one partition.
#[derive(Debug)]
pub(crate) struct ProducerBatch {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Records are appended here while the batch is open.
    builder: Option<RecordBatchBuilder>,
    /// The encoded batch, once drained.
    encoded: Option<Bytes>,
    pub records: i32,
    /// `buffer.memory` bytes this batch holds.
    pub memory: usize,
    pub created: Instant,
    /// Sends that failed and were retried.
    pub attempts: u32,
    retry_at: Option<Instant>,
    /// The idempotent sequence of the first record, once assigned (never wraps here; the
    /// wire value is taken modulo 2^31).
    pub sequence: Option<i64>,
    /// The encoded producer id, epoch and sequence, to know when to re-stamp.
    stamped: Option<(i64, i16, i64)>,
    /// Drain order within the partition, so retries go back in place.
    order: u64,
    id: u64,
    full: bool,
    pub completion: Arc<BatchCompletion>,
}

impl ProducerBatch {
    /// The encoded batch, stamped with the producer id, epoch and sequence (with
    /// idempotence; `None` leaves them unset). Encoding (and compressing) happens once;
    /// a re-sequenced retry patches the header.
    pub(crate) fn encode(&mut self, producer: Option<(i64, i16)>) -> Bytes {
        let stamp = producer.zip(self.sequence).map(|((id, epoch), seq)| (id, epoch, seq));
        if let Some(builder) = self.builder.take() {
            let builder = match stamp {
                Some((id, epoch, seq)) => builder.producer(id, epoch, wire_sequence(seq)),
                None => builder,
            };
            self.encoded = Some(Bytes::from(builder.build()));
            self.stamped = stamp;
        }
        let encoded = self.encoded.get_or_insert_with(Bytes::new);
        if stamp != self.stamped
            && let Some((id, epoch, seq)) = stamp
        {
            let mut restamped = encoded.to_vec();
            BatchMut::new(&mut restamped).set_producer(id, epoch, wire_sequence(seq));
            *encoded = Bytes::from(restamped);
            self.stamped = stamp;
        }
        encoded.clone()
    }

    /// Uncompressed size, for `max.request.size` decisions.
    pub(crate) fn size_bytes(&self) -> usize {
        match (&self.builder, &self.encoded) {
            (Some(builder), _) => builder.estimated_size_bytes(),
            (None, Some(encoded)) => encoded.len(),
            (None, None) => 0,
        }
    }
}

/// Kafka sequences are non-negative i32s that wrap to 0.
fn wire_sequence(sequence: i64) -> i32 {
    (sequence % (i64::from(i32::MAX) + 1)) as i32
}

#[derive(Debug, Default)]
struct PartitionQueue {
    batches: VecDeque<ProducerBatch>,
    in_flight: usize,
    /// A batch came back failed or to retry: send nothing until all in flight are back.
    holding: bool,
    /// A batch was dropped unwritten: re-sequence the queued batches before resuming.
    resequence: bool,
    next_sequence: i64,
    acked_sequence: i64,
    drained: u64,
}

impl PartitionQueue {
    /// Puts a drained batch back in drain order, before the batches never drained.
    fn put_back(&mut self, batch: ProducerBatch) {
        let at = self.batches.iter().position(|b| b.order == 0 || b.order > batch.order).unwrap_or(self.batches.len());
        self.batches.insert(at, batch);
    }

    /// Hands sequences out again, contiguously from the last acknowledged one, to the
    /// queued batches that had one.
    fn resequence_from(&mut self, start: i64) {
        let mut next = start;
        for batch in self.batches.iter_mut().filter(|b| b.sequence.is_some()) {
            batch.sequence = Some(next);
            next += i64::from(batch.records);
        }
        self.next_sequence = next;
    }
}

#[derive(Debug)]
struct TopicQueues {
    name: Arc<str>,
    partitions: Vec<PartitionQueue>,
}

/// A record to append: where it goes, what it is, and the `buffer.memory` it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Append<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header<'a>],
    pub memory: usize,
    /// Whether to take a count on the batch's completion, for a delivery future of this
    /// record. A caller appending many records asks [`Accumulator::completion`] once per
    /// batch instead.
    pub completion: bool,
}

/// Where an appended record went.
#[derive(Debug)]
pub(crate) struct Appended {
    /// The batch's completion, when asked for.
    pub completion: Option<Arc<BatchCompletion>>,
    /// The batch's id.
    pub batch: u64,
    /// The record's index in its batch.
    pub index: i32,
    /// A batch became ready (full) or the partition's first batch was opened: the
    /// sender should look again.
    pub wake_sender: bool,
    /// The previous batch of this partition was closed to make room.
    pub new_batch: bool,
}

/// A request's worth of batches for one broker.
#[derive(Debug)]
pub(crate) struct Drained {
    pub node: i32,
    pub batches: Vec<ProducerBatch>,
}

/// What the accumulator needs to know about where partitions live.
pub(crate) trait Leaders {
    /// The leader of a partition, or `None` when it is unknown.
    fn leader(&self, topic: &str, partition: i32) -> Option<i32>;
    /// Whether another request may be sent to `node`.
    fn can_send(&self, node: i32) -> bool;
}

/// The batches waiting to be sent.
#[derive(Debug)]
pub(crate) struct Accumulator {
    batch_size: usize,
    linger: Duration,
    compression: Compression,
    idempotent: bool,
    /// Looked up by every `send`, so hashed with foldhash rather than SipHash.
    topics: HashMap<Arc<str>, TopicQueues, foldhash::fast::RandomState>,
    next_batch_id: u64,
    /// Batches not yet completed (queued or in flight).
    incomplete: BTreeSet<u64>,
    /// Batches with a smaller id are sent without waiting for `linger.ms`.
    flush_before: u64,
}

impl Accumulator {
    pub(crate) fn new(batch_size: usize, linger: Duration, compression: Compression, idempotent: bool) -> Self {
        Self {
            batch_size,
            linger,
            compression,
            idempotent,
            topics: HashMap::default(),
            next_batch_id: 0,
            incomplete: BTreeSet::new(),
            flush_before: 0,
        }
    }

    /// Appends a record to the open batch of its partition, opening one if the record
    /// does not fit. `memory` is the `buffer.memory` the record holds. `now` is asked
    /// only when a batch is opened: reading the clock per record was a quarter of the
    /// producer's CPU.
    pub(crate) fn append(&mut self, record: Append<'_>, now: impl FnOnce() -> Instant) -> Appended {
        let Append { topic, partition, timestamp, key, value, headers, memory, completion } = record;
        let queues = match self.topics.get_mut(topic) {
            Some(queues) => queues,
            None => {
                let name: Arc<str> = Arc::from(topic);
                self.topics.entry(name.clone()).or_insert(TopicQueues { name, partitions: Vec::new() })
            }
        };
        let index = partition as usize;
        if queues.partitions.len() <= index {
            queues.partitions.resize_with(index + 1, PartitionQueue::default);
        }
        let queue = &mut queues.partitions[index];
        let fits = queue.batches.back().is_some_and(|b| {
            !b.full && b.builder.as_ref().is_some_and(|open| open.estimated_size_bytes() + memory <= self.batch_size)
        });
        let mut new_batch = false;
        let mut wake_sender = false;
        if !fits {
            if let Some(previous) = queue.batches.back_mut().filter(|b| b.builder.is_some() && !b.full) {
                previous.full = true;
                new_batch = true;
            }
            wake_sender = true;
            let mut builder = RecordBatchBuilder::new(self.compression);
            builder.reserve(self.batch_size.max(memory).min(1 << 20));
            let id = self.next_batch_id;
            self.next_batch_id += 1;
            self.incomplete.insert(id);
            queue.batches.push_back(ProducerBatch {
                topic: queues.name.clone(),
                partition,
                builder: Some(builder),
                encoded: None,
                records: 0,
                memory: 0,
                created: now(),
                attempts: 0,
                retry_at: None,
                sequence: None,
                stamped: None,
                order: 0,
                id,
                full: false,
                completion: Arc::default(),
            });
        }
        let batch = queue.batches.back_mut().expect("an open batch");
        let builder = batch.builder.as_mut().expect("open batch");
        builder.append(timestamp, key, value, headers);
        batch.records += 1;
        batch.memory += memory;
        if builder.estimated_size_bytes() >= self.batch_size {
            batch.full = true;
            wake_sender = true;
        }
        Appended {
            completion: completion.then(|| batch.completion.clone()),
            batch: batch.id,
            index: batch.records - 1,
            wake_sender,
            new_batch,
        }
    }

    /// The completion of a batch still queued (not yet drained for sending).
    pub(crate) fn completion(&self, topic: &str, partition: i32, batch: u64) -> Option<Arc<BatchCompletion>> {
        let queue = self.topics.get(topic)?.partitions.get(partition as usize)?;
        queue.batches.iter().rev().find(|b| b.id == batch).map(|b| b.completion.clone())
    }

    /// Sends everything queued now without waiting for `linger.ms`; returns the id that
    /// every batch queued so far is below.
    pub(crate) fn begin_flush(&mut self) -> u64 {
        self.flush_before = self.next_batch_id;
        self.next_batch_id
    }

    /// Whether every batch below `id` has completed.
    pub(crate) fn completed_below(&self, id: u64) -> bool {
        self.incomplete.first().is_none_or(|&first| first >= id)
    }

    /// Whether nothing is queued or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.incomplete.is_empty()
    }

    /// Whether a partition is holding back after a failed batch.
    pub(crate) fn is_holding(&self, topic: &str, partition: i32) -> bool {
        self.topics.get(topic).and_then(|t| t.partitions.get(partition as usize)).is_some_and(|q| q.holding)
    }

    /// Takes the batches that are ready and whose leaders can take a request: at most one
    /// per partition and one request per broker, each up to `max_request_size` bytes.
    /// Also returns when to look again (the earliest linger or backoff deadline) and
    /// whether some partition's leader is unknown.
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        leaders: &impl Leaders,
        max_request_size: usize,
    ) -> (Vec<Drained>, Option<Instant>, bool) {
        let mut requests: Vec<Drained> = Vec::new();
        let mut sizes: HashMap<i32, usize> = HashMap::new();
        let mut next_check: Option<Instant> = None;
        let mut unknown_leader = false;
        let mut wake_at = |at: Instant| next_check = Some(next_check.map_or(at, |n: Instant| n.min(at)));
        for (topic, queues) in &mut self.topics {
            for (partition, queue) in queues.partitions.iter_mut().enumerate() {
                if queue.batches.is_empty() {
                    continue;
                }
                if queue.holding {
                    if queue.in_flight > 0 {
                        continue;
                    }
                    if queue.resequence {
                        queue.resequence_from(queue.acked_sequence);
                        queue.resequence = false;
                    }
                    queue.holding = false;
                }
                let head = queue.batches.front().expect("not empty");
                if let Some(at) = head.retry_at.filter(|at| *at > now) {
                    wake_at(at);
                    continue;
                }
                let lingered = head.created + self.linger;
                let ready = head.full
                    || queue.batches.len() > 1
                    || head.attempts > 0
                    || head.id < self.flush_before
                    || now >= lingered;
                if !ready {
                    wake_at(lingered);
                    continue;
                }
                let Some(node) = leaders.leader(topic, partition as i32) else {
                    unknown_leader = true;
                    continue;
                };
                let size = head.size_bytes();
                let used = sizes.get(&node).copied();
                match used {
                    None if !leaders.can_send(node) => continue,
                    Some(used) if used + size > max_request_size => continue,
                    _ => {}
                }
                let mut batch = queue.batches.pop_front().expect("not empty");
                batch.full = true;
                if batch.order == 0 {
                    queue.drained += 1;
                    batch.order = queue.drained;
                }
                if self.idempotent && batch.sequence.is_none() {
                    batch.sequence = Some(queue.next_sequence);
                    queue.next_sequence += i64::from(batch.records);
                }
                queue.in_flight += 1;
                *sizes.entry(node).or_default() += size;
                match requests.iter_mut().find(|r| r.node == node) {
                    Some(request) => request.batches.push(batch),
                    None => requests.push(Drained { node, batches: vec![batch] }),
                }
            }
        }
        (requests, next_check, unknown_leader)
    }

    fn queue(&mut self, batch: &ProducerBatch) -> &mut PartitionQueue {
        let queues = self.topics.get_mut(&batch.topic).expect("a drained batch's topic stays");
        &mut queues.partitions[batch.partition as usize]
    }

    /// The broker wrote `batch`.
    pub(crate) fn acknowledge(&mut self, batch: ProducerBatch, ack: BatchAck) -> usize {
        let queue = self.queue(&batch);
        queue.in_flight -= 1;
        if let Some(sequence) = batch.sequence {
            queue.acked_sequence = queue.acked_sequence.max(sequence + i64::from(batch.records));
        }
        self.finish(batch, Ok(ack))
    }

    /// `batch`, which was drained, failed for good and surely unwritten: later sequences
    /// close its gap. (A batch the broker may have written needs a producer reset
    /// instead.) Returns the `buffer.memory` bytes freed.
    pub(crate) fn fail(&mut self, batch: ProducerBatch, error: ClientError) -> usize {
        let queue = self.queue(&batch);
        queue.in_flight -= 1;
        queue.holding = true;
        queue.resequence |= batch.sequence.is_some();
        self.finish(batch, Err(error))
    }

    /// `batch` is to be sent again after `backoff`, before the partition's newer batches.
    pub(crate) fn retry(&mut self, mut batch: ProducerBatch, now: Instant, backoff: Duration) {
        batch.attempts += 1;
        batch.retry_at = Some(now + backoff);
        let queue = self.queue(&batch);
        queue.in_flight -= 1;
        queue.holding = true;
        queue.put_back(batch);
    }

    /// Removes the queued batches older than `delivery_timeout`. Batches that were sent
    /// before are returned separately: the broker may have written them.
    pub(crate) fn expire(&mut self, now: Instant, delivery_timeout: Duration) -> Vec<ProducerBatch> {
        let mut expired = Vec::new();
        for queues in self.topics.values_mut() {
            for queue in queues.partitions.iter_mut() {
                while queue.batches.front().is_some_and(|b| now.duration_since(b.created) >= delivery_timeout) {
                    let batch = queue.batches.pop_front().expect("checked");
                    if batch.sequence.is_some() {
                        queue.holding = true;
                        queue.resequence = true;
                    }
                    expired.push(batch);
                }
            }
        }
        expired
    }

    /// Completes an expired (or otherwise removed, never in flight) batch.
    pub(crate) fn finish_removed(&mut self, batch: ProducerBatch, error: ClientError) -> usize {
        self.finish(batch, Err(error))
    }

    /// The producer got a new id or epoch: every partition's sequences start again at 0.
    /// Only call with nothing in flight.
    pub(crate) fn reset_sequences(&mut self) {
        for queue in self.topics.values_mut().flat_map(|t| &mut t.partitions) {
            debug_assert_eq!(queue.in_flight, 0);
            queue.acked_sequence = 0;
            queue.resequence_from(0);
            queue.holding = false;
            queue.resequence = false;
        }
    }

    fn finish(&mut self, batch: ProducerBatch, outcome: Result<BatchAck, ClientError>) -> usize {
        self.incomplete.remove(&batch.id);
        batch.completion.complete(outcome);
        batch.memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneBroker {
        capacity: bool,
    }

    impl Leaders for OneBroker {
        fn leader(&self, topic: &str, _partition: i32) -> Option<i32> {
            (topic != "leaderless").then_some(1)
        }
        fn can_send(&self, _node: i32) -> bool {
            self.capacity
        }
    }

    const BROKER: OneBroker = OneBroker { capacity: true };

    fn accumulator(idempotent: bool) -> Accumulator {
        Accumulator::new(200, Duration::from_millis(5), Compression::None, idempotent)
    }

    fn record(topic: &'static str, partition: i32, value: Option<&'static [u8]>, memory: usize) -> Append<'static> {
        let (timestamp, key, headers) = (1_700_000_000_000, None, &[][..]);
        Append { topic, partition, timestamp, key, value, headers, memory, completion: true }
    }

    fn append(acc: &mut Accumulator, partition: i32, now: Instant) -> Appended {
        acc.append(record("t", partition, Some(&[7; 50]), 60), || now)
    }

    fn ack(offset: i64) -> BatchAck {
        BatchAck { base_offset: offset, log_append_time: -1 }
    }

    #[test]
    fn a_batch_waits_for_linger_unless_it_is_full_or_flushed() {
        let t0 = Instant::now();
        let mut acc = accumulator(false);
        assert!(append(&mut acc, 0, t0).wake_sender, "the first batch arms the linger timer");
        assert!(!append(&mut acc, 0, t0).wake_sender);
        let (drained, next, _) = acc.drain(t0, &BROKER, 1 << 20);
        assert!(drained.is_empty());
        assert_eq!(next, Some(t0 + Duration::from_millis(5)));
        let (drained, ..) = acc.drain(t0 + Duration::from_millis(5), &BROKER, 1 << 20);
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].batches[0].records, 2);

        // 200-byte batches hold two 60-byte records plus the overhead: the third opens
        // a new batch, which makes the old one ready at once.
        let t1 = t0 + Duration::from_millis(10);
        append(&mut acc, 1, t1);
        append(&mut acc, 1, t1);
        let third = append(&mut acc, 1, t1);
        assert!(third.new_batch && third.wake_sender);
        assert_eq!(third.index, 0);
        let (drained, ..) = acc.drain(t1, &BROKER, 1 << 20);
        assert_eq!(drained[0].batches.len(), 1);
        assert_eq!(drained[0].batches[0].records, 2);

        let flush = acc.begin_flush();
        let (drained, ..) = acc.drain(t1, &BROKER, 1 << 20);
        assert_eq!(drained[0].batches[0].records, 1, "a flush sends the lingering batch now");
        assert!(!acc.completed_below(flush));
    }

    #[test]
    fn one_request_per_broker_carries_one_batch_per_partition_within_the_size_limit() {
        let t0 = Instant::now();
        let mut acc = accumulator(false);
        for p in 0..3 {
            append(&mut acc, p, t0);
        }
        let later = t0 + Duration::from_millis(5);
        let (drained, ..) = acc.drain(later, &OneBroker { capacity: false }, 1 << 20);
        assert!(drained.is_empty(), "no request while the broker has the maximum in flight");
        let (drained, ..) = acc.drain(later, &BROKER, 300);
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].batches.len(), 2, "two 140-byte batches fit in 300 bytes");
        let (drained, ..) = acc.drain(later, &BROKER, 300);
        assert_eq!(drained[0].batches.len(), 1);
    }

    #[test]
    fn unknown_leaders_are_reported_and_their_batches_stay() {
        let t0 = Instant::now();
        let mut acc = accumulator(false);
        acc.append(record("leaderless", 0, None, 30), || t0);
        let (drained, _, unknown) = acc.drain(t0 + Duration::from_secs(1), &BROKER, 1 << 20);
        assert!(drained.is_empty() && unknown);
        assert!(!acc.is_idle());
    }

    #[test]
    fn a_retried_batch_goes_back_in_front_and_the_partition_waits_for_all_in_flight() {
        let t0 = Instant::now();
        let mut acc = accumulator(true);
        let mut sent = Vec::new();
        for _ in 0..3 {
            append(&mut acc, 0, t0);
            append(&mut acc, 0, t0);
            let (mut drained, ..) = acc.drain(t0 + Duration::from_millis(5), &BROKER, 1 << 20);
            sent.push(drained.remove(0).batches.remove(0));
        }
        assert_eq!(sent.iter().map(|b| b.sequence).collect::<Vec<_>>(), [Some(0), Some(2), Some(4)]);
        append(&mut acc, 0, t0); // newer, never sent
        let mut sent = sent.into_iter();
        let (first, second, third) = (sent.next().unwrap(), sent.next().unwrap(), sent.next().unwrap());

        let backoff = Duration::from_millis(100);
        acc.retry(first, t0, backoff);
        let t1 = t0 + Duration::from_millis(200);
        let (drained, ..) = acc.drain(t1, &BROKER, 1 << 20);
        assert!(drained.is_empty(), "nothing moves while two batches are still in flight");
        acc.retry(third, t0, backoff);
        acc.retry(second, t0, backoff);
        let mut order = Vec::new();
        for _ in 0..4 {
            let (mut drained, ..) = acc.drain(t1, &BROKER, 1 << 20);
            let batch = drained.remove(0).batches.remove(0);
            order.push((batch.sequence, batch.attempts));
            acc.acknowledge(batch, ack(0));
        }
        assert_eq!(order, [(Some(0), 1), (Some(2), 1), (Some(4), 1), (Some(6), 0)]);
        assert!(acc.is_idle());
    }

    #[test]
    fn a_batch_that_failed_unwritten_closes_its_sequence_gap() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        let mut acc = accumulator(true);
        let mut sent = Vec::new();
        for _ in 0..2 {
            append(&mut acc, 0, t0);
            let (mut drained, ..) = acc.drain(t1, &BROKER, 1 << 20);
            sent.push(drained.remove(0).batches.remove(0));
        }
        let second = sent.pop().unwrap();
        let first = sent.pop().unwrap();
        let memory = acc.fail(first, ClientError::Closed("test"));
        assert_eq!(memory, 60);
        // The broker refuses the second for the gap; it is retried with sequence 0.
        acc.retry(second, t0, Duration::ZERO);
        let (mut drained, ..) = acc.drain(t1, &BROKER, 1 << 20);
        let mut second = drained.remove(0).batches.remove(0);
        assert_eq!(second.sequence, Some(0));
        let bytes = second.encode(Some((9, 0))).to_vec();
        let header = crate::record::BatchHeader::parse(&bytes).unwrap();
        assert_eq!((header.producer_id, header.base_sequence), (9, 0));
        assert!(crate::record::RecordBatch::parse(&bytes).unwrap().0.check_integrity().is_ok());
    }

    #[test]
    fn encoding_stamps_once_and_restamps_after_a_new_sequence() {
        let t0 = Instant::now();
        let mut acc = accumulator(true);
        append(&mut acc, 0, t0);
        let (mut drained, ..) = acc.drain(t0 + Duration::from_millis(5), &BROKER, 1 << 20);
        let mut batch = drained.remove(0).batches.remove(0);
        let first = batch.encode(Some((5, 1))).to_vec();
        assert_eq!(crate::record::BatchHeader::parse(&first).unwrap().base_sequence, 0);
        batch.sequence = Some(i64::from(i32::MAX) + 3);
        let again = batch.encode(Some((5, 2))).to_vec();
        let header = crate::record::BatchHeader::parse(&again).unwrap();
        assert_eq!((header.producer_epoch, header.base_sequence), (2, 2), "sequences wrap to 0 after i32::MAX");
        assert!(crate::record::RecordBatch::parse(&again).unwrap().0.check_integrity().is_ok());
    }

    #[test]
    fn old_batches_expire_and_free_their_memory() {
        let t0 = Instant::now();
        let mut acc = accumulator(false);
        append(&mut acc, 0, t0);
        append(&mut acc, 1, t0 + Duration::from_secs(1));
        let expired = acc.expire(t0 + Duration::from_millis(1500), Duration::from_secs(1));
        assert_eq!(expired.len(), 1);
        let completion = expired[0].completion.clone();
        let freed: usize = expired.into_iter().map(|b| acc.finish_removed(b, ClientError::Closed("test"))).sum();
        assert_eq!(freed, 60);
        assert!(matches!(completion.outcome(), Some(Err(ClientError::Closed(_)))));
        assert!(!acc.is_idle());
    }
}
