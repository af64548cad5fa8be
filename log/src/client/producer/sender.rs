//! The sender task: drains ready batches into Produce requests and settles their
//! answers.
//!
//! One task owns the decisions (what to send, what to retry, when to refresh metadata or
//! reset the producer id). Each broker has a writer task that queues requests on its
//! connection in the order the sender made them (so sequence numbers arrive in order) and
//! spawns a wait for each answer; answers come back to the sender over a channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;

use super::Core;
use super::accumulator::{BatchAck, Leaders, ProducerBatch};
use super::config::Acks;
use crate::client::cluster::Cluster;
use crate::client::connection::Connection;
use crate::client::error::{ClientError, Result};
use crate::codes;

/// How often queued batches are checked against `delivery.timeout.ms`.
const EXPIRY_CHECK: Duration = Duration::from_millis(100);

/// Gets a producer id (or, given the current one, a bumped epoch) from any broker.
pub(super) async fn init_producer_id(cluster: &Cluster, current: Option<(i64, i16)>) -> Result<(i64, i16)> {
    let (id, epoch) = current.unwrap_or((-1, -1));
    let connection = cluster.any().await?;
    let mut request = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1);
    // Naming the current id asks to bump its epoch (KIP-360, v3+).
    if connection.version(kafka_protocol::messages::ApiKey::InitProducerId)? >= 3 {
        request = request.with_producer_id(ProducerId(id)).with_producer_epoch(epoch);
    }
    let response = connection.send(&request).await?;
    if let Some(e) = ClientError::from_code(response.error_code, "InitProducerId", None) {
        return Err(e);
    }
    Ok((response.producer_id.0, response.producer_epoch))
}

/// A request for a broker's writer.
struct Outgoing {
    batches: Vec<ProducerBatch>,
    request: ProduceRequest,
}

/// An answer (or failure) for the sender.
struct Answer {
    node: i32,
    batches: Vec<ProducerBatch>,
    result: Result<Option<ProduceResponse>>,
}

struct Sender {
    core: Arc<Core>,
    producer: Option<(i64, i16)>,
    writers: HashMap<i32, mpsc::UnboundedSender<Outgoing>>,
    in_flight: HashMap<i32, usize>,
    answers_tx: mpsc::UnboundedSender<Answer>,
    /// The producer id must be renewed once nothing is in flight.
    reset_pending: bool,
    metadata_refresh: Option<tokio::task::JoinHandle<()>>,
    refresh_wanted: bool,
    last_expiry_check: Instant,
}

struct SenderLeaders<'a> {
    cluster: &'a Cluster,
    in_flight: &'a HashMap<i32, usize>,
    max_in_flight: usize,
}

impl Leaders for SenderLeaders<'_> {
    fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let topic = self.cluster.cached_topic(topic)?;
        topic.partitions.get(partition as usize).map(|p| p.leader).filter(|&leader| leader >= 0)
    }

    fn can_send(&self, node: i32) -> bool {
        self.in_flight.get(&node).copied().unwrap_or(0) < self.max_in_flight
    }
}

pub(super) async fn run(core: Arc<Core>, producer: Option<(i64, i16)>) {
    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let mut sender = Sender {
        core,
        producer,
        writers: HashMap::new(),
        in_flight: HashMap::new(),
        answers_tx,
        reset_pending: false,
        metadata_refresh: None,
        refresh_wanted: false,
        last_expiry_check: Instant::now(),
    };
    loop {
        let next_check = sender.step().await;
        if sender.core.closing.load(Ordering::Acquire) {
            if sender.core.accumulator.lock().is_idle() {
                break;
            }
            sender.core.accumulator.lock().begin_flush();
        }
        let sleep = next_check.unwrap_or_else(|| Instant::now() + EXPIRY_CHECK).min(Instant::now() + EXPIRY_CHECK);
        tokio::select! {
            Some(answer) = answers.recv() => {
                sender.settle(answer);
                while let Ok(answer) = answers.try_recv() {
                    sender.settle(answer);
                }
            }
            () = sender.core.wake.notified() => {}
            () = tokio::time::sleep_until(sleep.into()) => {}
        }
    }
    if let Some(refresh) = sender.metadata_refresh.take() {
        refresh.abort();
    }
}

impl Sender {
    /// Expires old batches, renews the producer id if needed, and sends what is ready.
    /// Returns when to look again.
    async fn step(&mut self) -> Option<Instant> {
        let now = Instant::now();
        if now.duration_since(self.last_expiry_check) >= EXPIRY_CHECK {
            self.last_expiry_check = now;
            self.expire(now);
        }
        if self.reset_pending {
            if !self.in_flight.values().all(|&n| n == 0) {
                return None;
            }
            match init_producer_id(&self.core.cluster, self.producer).await {
                Ok(producer) => {
                    tracing::info!(?producer, "producer id renewed; sequences restart at 0");
                    self.producer = Some(producer);
                    self.core.accumulator.lock().reset_sequences();
                    self.reset_pending = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the producer id failed; retrying");
                    return Some(now + self.core.config.client.retry_backoff);
                }
            }
        }
        if self.refresh_wanted || self.core.cluster.is_stale() {
            self.refresh_metadata();
        }
        let config = &self.core.config;
        let (requests, next_check, unknown_leader) = {
            let leaders = SenderLeaders {
                cluster: &self.core.cluster,
                in_flight: &self.in_flight,
                max_in_flight: config.max_in_flight,
            };
            self.core.accumulator.lock().drain(now, &leaders, config.max_request_size)
        };
        if unknown_leader {
            self.refresh_wanted = true;
        }
        for request in requests {
            self.dispatch(request.node, request.batches);
        }
        next_check
    }

    /// Fails queued batches that outlived `delivery.timeout.ms`.
    fn expire(&mut self, now: Instant) {
        let timeout = self.core.config.delivery_timeout;
        let mut accumulator = self.core.accumulator.lock();
        let expired = accumulator.expire(now, timeout);
        if expired.is_empty() {
            return;
        }
        let mut freed = 0;
        for batch in expired {
            // A batch that was sent may have been written: its sequence cannot be reused.
            self.reset_pending |= self.core.idempotent && batch.attempts > 0;
            let error = ClientError::Timeout {
                what: format!(
                    "delivering {} records to {}-{} ({} attempts)",
                    batch.records, batch.topic, batch.partition, batch.attempts
                ),
                after_ms: timeout.as_millis() as u64,
            };
            freed += accumulator.finish_removed(batch, error);
        }
        drop(accumulator);
        self.core.memory.add_permits(freed);
        self.core.completed.notify_waiters();
    }

    /// Refreshes the metadata of the topics being produced to, in the background.
    fn refresh_metadata(&mut self) {
        if self.metadata_refresh.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        self.refresh_wanted = false;
        let core = self.core.clone();
        self.metadata_refresh = Some(tokio::spawn(async move {
            let topics = core.cluster.cached_topic_names();
            if let Err(e) = core.cluster.refresh(Some(&topics)).await {
                tracing::debug!(error = %e, "metadata refresh failed");
                tokio::time::sleep(core.config.client.retry_backoff).await;
            }
            core.wake.notify_one();
        }));
    }

    /// Hands a request to the broker's writer, starting one if needed.
    fn dispatch(&mut self, node: i32, mut batches: Vec<ProducerBatch>) {
        let config = &self.core.config;
        let producer = if self.core.idempotent { self.producer } else { None };
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for batch in &mut batches {
            let records = batch.encode(producer);
            let data = PartitionProduceData::default().with_index(batch.partition).with_records(Some(records));
            match topics.iter_mut().find(|t| t.name.0.as_str() == &*batch.topic) {
                Some(topic) => topic.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(batch.topic.to_string())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        let request = ProduceRequest::default()
            .with_acks(config.acks.code())
            .with_timeout_ms(config.client.request_timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(topics);
        *self.in_flight.entry(node).or_default() += 1;
        let writer = self.writers.entry(node).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(write_requests(self.core.clone(), node, rx, self.answers_tx.clone()));
            tx
        });
        if let Err(mpsc::error::SendError(outgoing)) = writer.send(Outgoing { batches, request }) {
            // The writer stopped (it never does while the sender runs); answer ourselves.
            let error = ClientError::Closed("producer");
            let _ = self.answers_tx.send(Answer { node, batches: outgoing.batches, result: Err(error) });
        }
    }

    /// Settles one answer: acknowledges, retries or fails each batch.
    fn settle(&mut self, answer: Answer) {
        if let Some(n) = self.in_flight.get_mut(&answer.node) {
            *n = n.saturating_sub(1);
        }
        let now = Instant::now();
        let mut freed = 0;
        let core = self.core.clone();
        let mut accumulator = core.accumulator.lock();
        match answer.result {
            Ok(None) => {
                for batch in answer.batches {
                    freed += accumulator.acknowledge(batch, BatchAck { base_offset: -1, log_append_time: -1 });
                }
            }
            Ok(Some(response)) => {
                let mut results = HashMap::new();
                for topic in &response.responses {
                    for p in &topic.partition_responses {
                        results.insert((topic.name.0.as_str(), p.index), p);
                    }
                }
                for batch in answer.batches {
                    let Some(p) = results.get(&(&*batch.topic, batch.partition)).copied() else {
                        let reason = format!("no answer for {}-{}", batch.topic, batch.partition);
                        let error = ClientError::Protocol { addr: format!("broker {}", answer.node), reason };
                        freed += self.retry_or_fail(&mut accumulator, batch, error, true, now);
                        continue;
                    };
                    if p.error_code == codes::NONE || p.error_code == codes::DUPLICATE_SEQUENCE_NUMBER {
                        let ack = BatchAck { base_offset: p.base_offset, log_append_time: p.log_append_time_ms };
                        freed += accumulator.acknowledge(batch, ack);
                        continue;
                    }
                    let error = ClientError::Broker {
                        code: p.error_code,
                        context: format!("producing to {}-{}", batch.topic, batch.partition),
                        message: p.error_message.as_ref().map(|m| m.to_string()),
                    };
                    freed += self.retry_or_fail(&mut accumulator, batch, error, false, now);
                }
            }
            Err(error) => {
                for batch in answer.batches {
                    freed += self.retry_or_fail(&mut accumulator, batch, error.clone(), true, now);
                }
            }
        }
        drop(accumulator);
        if freed > 0 {
            self.core.memory.add_permits(freed);
        }
        self.core.completed.notify_waiters();
    }

    /// Puts a failed batch back for another try, or fails it for good. `maybe_written`:
    /// the answer was lost, so the broker may have the batch.
    fn retry_or_fail(
        &mut self,
        accumulator: &mut super::accumulator::Accumulator,
        batch: ProducerBatch,
        error: ClientError,
        maybe_written: bool,
        now: Instant,
    ) -> usize {
        let config = &self.core.config;
        let code = error.code();
        if matches!(error, ClientError::Disconnected { .. } | ClientError::Io { .. })
            || matches!(
                code,
                Some(
                    codes::NOT_LEADER_OR_FOLLOWER
                        | codes::UNKNOWN_TOPIC_OR_PARTITION
                        | codes::LEADER_NOT_AVAILABLE
                        | codes::FENCED_LEADER_EPOCH
                        | codes::UNKNOWN_LEADER_EPOCH
                )
            )
        {
            self.refresh_wanted = true;
        }
        // With idempotence the broker refuses a sequence gap; when the batch before it is
        // being retried that is expected and this one follows it. A gap with nothing
        // before it means the broker lost this producer's state: start a new epoch.
        let sequence_error = self.core.idempotent
            && matches!(code, Some(codes::OUT_OF_ORDER_SEQUENCE_NUMBER | codes::UNKNOWN_PRODUCER_ID));
        if sequence_error && !accumulator.is_holding(&batch.topic, batch.partition) {
            self.reset_pending = true;
        }
        let retriable = error.is_retriable() || sequence_error;
        let in_time = now.duration_since(batch.created) + config.client.retry_backoff < config.delivery_timeout;
        if retriable && in_time && batch.attempts < config.retries {
            tracing::debug!(error = %error, topic = %batch.topic, partition = batch.partition, "retrying a batch");
            accumulator.retry(batch, now, config.client.retry_backoff);
            return 0;
        }
        if self.core.idempotent && (maybe_written || sequence_error) {
            self.reset_pending = true;
        }
        accumulator.fail(batch, error)
    }
}

/// A broker's writer: queues requests on the broker's connection in order and waits for
/// each answer in its own task.
async fn write_requests(
    core: Arc<Core>,
    node: i32,
    mut requests: mpsc::UnboundedReceiver<Outgoing>,
    answers: mpsc::UnboundedSender<Answer>,
) {
    let mut connection: Option<Arc<Connection>> = None;
    while let Some(Outgoing { batches, request }) = requests.recv().await {
        let begun = async {
            let open = match connection.as_ref().filter(|c| !c.is_closed()) {
                Some(c) => c.clone(),
                None => {
                    let c = core.cluster.broker(node).await?;
                    connection = Some(c.clone());
                    c
                }
            };
            if core.config.acks == Acks::None {
                open.send_without_response(&request).await?;
                return Ok(None);
            }
            open.begin(&request).await.map(Some)
        }
        .await;
        match begun {
            Ok(Some(pending)) => {
                let answers = answers.clone();
                tokio::spawn(async move {
                    let result = pending.wait().await.map(Some);
                    let _ = answers.send(Answer { node, batches, result });
                });
            }
            Ok(None) => {
                let _ = answers.send(Answer { node, batches, result: Ok(None) });
            }
            Err(e) => {
                let _ = answers.send(Answer { node, batches, result: Err(e) });
            }
        }
    }
}
