//! [`TopologyTestDriver`]: runs a topology without a broker, one record at a time,
//! deterministically.
//!
//! Each sub-topology runs as one task (partition 0). A piped record is processed through
//! the topology; records written to topics the topology reads (repartition topics included)
//! are processed in turn; then the tasks commit, which flushes their caches, as Kafka's
//! driver does after every input record. Output topics, changelogs included, can be read
//! back; stores can be inspected; wall-clock time moves only when told.
//!
//! ```
//! use freshet_streams::{Consumed, Produced, StreamsBuilder, StreamsConfig, TopologyTestDriver};
//! use freshet_streams::serde::Serdes;
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("in", Consumed::with(Serdes::string(), Serdes::i64()))
//!     .filter(|_, v| *v > 10)
//!     .to("out", Produced::with(Serdes::string(), Serdes::i64()));
//! let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("test", "unused:9092")).unwrap();
//! let input = driver.input_topic("in", Serdes::string(), Serdes::i64());
//! let output = driver.output_topic("out", Serdes::string(), Serdes::i64());
//! input.pipe_input("a".to_string(), 5).unwrap();
//! input.pipe_input("b".to_string(), 50).unwrap();
//! assert_eq!(output.read_key_values().unwrap(), vec![("b".to_string(), 50)]);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_log::client::ConsumerRecord;
use freshet_log::record::TimestampType;
use parking_lot::Mutex;

use crate::config::StreamsConfig;
use crate::error::{Result, StreamsError};
use crate::processor::PunctuationType;
use crate::record::{Headers, TaskId};
use crate::serde::Serde;
use crate::state::{KeyValueStore, StoreInner, StoreSpec};
use crate::task::StreamTask;
use crate::task::context::{OutRecord, RecordCollector};
use crate::topology::Topology;

/// A record as a test reads it from an output topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// The timestamp.
    pub timestamp: i64,
    /// The headers.
    pub headers: Headers,
}

#[derive(Debug, Clone)]
struct Written {
    topic: Arc<str>,
    key: Option<Bytes>,
    value: Option<Bytes>,
    timestamp: i64,
    headers: Headers,
}

#[derive(Default)]
struct Outputs {
    /// Per topic, what tests have not read yet.
    unread: BTreeMap<String, VecDeque<Written>>,
    /// Everything written, in order, not yet fed back to the topology.
    pending: VecDeque<Written>,
}

struct Collector(Rc<RefCell<Outputs>>);

impl RecordCollector for Collector {
    fn send(&mut self, record: OutRecord<'_>) -> Result<()> {
        let written = Written {
            topic: record.topic.into(),
            key: record.key.map(Bytes::copy_from_slice),
            value: record.value.map(Bytes::copy_from_slice),
            timestamp: record.timestamp,
            headers: record.headers.clone(),
        };
        let mut outputs = self.0.borrow_mut();
        outputs.unread.entry(record.topic.to_string()).or_default().push_back(written.clone());
        outputs.pending.push_back(written);
        Ok(())
    }
}

struct Driver {
    topology: Arc<Topology>,
    application_id: Arc<str>,
    tasks: Vec<StreamTask>,
    outputs: Rc<RefCell<Outputs>>,
    offsets: HashMap<Arc<str>, i64>,
    wall_clock_ms: i64,
}

impl Driver {
    /// The task reading `topic`, if any.
    fn task_for(&mut self, topic: &str) -> Option<&mut StreamTask> {
        let app = self.application_id.clone();
        let topology = self.topology.clone();
        self.tasks.iter_mut().find(|t| {
            let sub = if t.id.subtopology == GLOBAL {
                &topology.global_parts[t.id.partition as usize]
            } else {
                &topology.subtopologies[t.id.subtopology as usize]
            };
            sub.reads(topic, &app, &topology.nodes)
        })
    }

    fn feed(&mut self, written: Written) -> Result<()> {
        let offset = self.offsets.entry(written.topic.clone()).or_insert(0);
        let record = ConsumerRecord {
            topic: written.topic.clone(),
            partition: 0,
            offset: *offset,
            timestamp: written.timestamp,
            timestamp_type: TimestampType::CreateTime,
            key: written.key,
            value: written.value,
            headers: written.headers,
            leader_epoch: None,
        };
        *offset += 1;
        if let Some(task) = self.task_for(&record.topic) {
            task.process(record)?;
            task.punctuate(PunctuationType::StreamTime)?;
        }
        Ok(())
    }

    /// Processes what the topology wrote to its own inputs, and commits, until nothing moves.
    fn settle(&mut self) -> Result<()> {
        loop {
            let next = self.outputs.borrow_mut().pending.pop_front();
            if let Some(written) = next {
                self.feed(written)?;
                continue;
            }
            for task in &mut self.tasks {
                task.flush()?;
            }
            if self.outputs.borrow().pending.is_empty() {
                return Ok(());
            }
        }
    }
}

/// The sub-topology number the driver gives global-store tasks.
const GLOBAL: u32 = u32::MAX;

/// Runs a topology without a broker. See the [module documentation](self).
pub struct TopologyTestDriver {
    inner: Rc<RefCell<Driver>>,
    state_dir: PathBuf,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver").field("state_dir", &self.state_dir).finish()
    }
}

impl TopologyTestDriver {
    /// A driver for `topology`, with wall-clock time starting at 0.
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        Self::with_wall_clock(topology, config, 0)
    }

    /// A driver whose wall clock starts at `wall_clock_ms`.
    pub fn with_wall_clock(topology: Topology, config: StreamsConfig, wall_clock_ms: i64) -> Result<Self> {
        config.validate()?;
        let topology = Arc::new(topology);
        let application_id: Arc<str> = config.application_id.as_str().into();
        let state_dir = std::env::temp_dir().join(format!("freshet-test-driver-{}", uuid::Uuid::new_v4()));
        let outputs = Rc::new(RefCell::new(Outputs::default()));
        let cache_bytes = config.cache_max_bytes;
        let mut tasks = Vec::new();
        let parts = topology
            .subtopologies
            .iter()
            .map(|s| (TaskId::new(s.id, 0), s))
            .chain(topology.global_parts.iter().enumerate().map(|(i, s)| (TaskId::new(GLOBAL, i as i32), s)));
        for (id, sub) in parts {
            let task_dir = state_dir.join(id.to_string());
            let mut open = |spec: &StoreSpec, _changelog: &str| {
                let bytes = StoreInner::open_bytes(spec.kind, &spec.name, Some(&task_dir))?;
                let cache = if spec.caching { cache_bytes } else { 0 };
                Ok(Arc::new(Mutex::new(StoreInner::new(&spec.name, bytes, cache, spec.logging))))
            };
            let task = StreamTask::create(
                topology.clone(),
                sub,
                application_id.clone(),
                id,
                Box::new(Collector(outputs.clone())),
                config.deserialization_handler.clone(),
                &mut open,
                wall_clock_ms,
            )?;
            tasks.push(task);
        }
        let driver = Driver { topology, application_id, tasks, outputs, offsets: HashMap::new(), wall_clock_ms };
        Ok(TopologyTestDriver { inner: Rc::new(RefCell::new(driver)), state_dir })
    }

    /// A topic to pipe records into, with the serdes to write them.
    pub fn input_topic<KS: Serde, VS: Serde>(&self, topic: &str, keys: KS, values: VS) -> TestInputTopic<KS, VS> {
        TestInputTopic { driver: self.inner.clone(), topic: topic.into(), keys, values, next_timestamp: 0 }
    }

    /// A topic to read records from, with the serdes to read them.
    pub fn output_topic<KS: Serde, VS: Serde>(&self, topic: &str, keys: KS, values: VS) -> TestOutputTopic<KS, VS> {
        TestOutputTopic { driver: self.inner.clone(), topic: topic.to_string(), keys, values }
    }

    /// Moves wall-clock time forward and runs the punctuations that became due.
    pub fn advance_wall_clock_time(&self, by: Duration) -> Result<()> {
        let mut driver = self.inner.borrow_mut();
        driver.wall_clock_ms += by.as_millis().min(i64::MAX as u128) as i64;
        let now = driver.wall_clock_ms;
        for task in &mut driver.tasks {
            task.set_wall_clock(now);
            task.punctuate(PunctuationType::WallClockTime)?;
        }
        driver.settle()
    }

    /// The store `name`, to read or change (in the first task that has it).
    pub fn key_value_store<K: 'static, V: 'static>(&self, name: &str) -> Result<KeyValueStore<K, V>> {
        let driver = self.inner.borrow();
        for task in &driver.tasks {
            if let Some(store) = task.stores().find(|s| s.spec.name == name) {
                let serdes = store.spec.serdes::<K, V>("the test driver")?;
                return Ok(KeyValueStore::new(
                    store.store.clone(),
                    store.changelog.clone(),
                    serdes,
                    task.ctx.clock.clone(),
                ));
            }
        }
        Err(StreamsError::store(name, "no such store in this topology"))
    }

    /// Names of the topics the topology has written to, internal ones included.
    pub fn produced_topic_names(&self) -> Vec<String> {
        self.inner.borrow().outputs.borrow().unread.keys().cloned().collect()
    }

    /// Records skipped so far (undeserializable, or with negative timestamps).
    pub fn skipped_records(&self) -> u64 {
        self.inner.borrow().tasks.iter().map(|t| t.metrics().skipped).sum()
    }
}

impl Drop for TopologyTestDriver {
    fn drop(&mut self) {
        if let Ok(mut driver) = self.inner.try_borrow_mut() {
            for task in &mut driver.tasks {
                task.close();
            }
            driver.tasks.clear();
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// An input topic of a [`TopologyTestDriver`].
pub struct TestInputTopic<KS, VS> {
    driver: Rc<RefCell<Driver>>,
    topic: Arc<str>,
    keys: KS,
    values: VS,
    next_timestamp: i64,
}

impl<KS, VS> std::fmt::Debug for TestInputTopic<KS, VS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestInputTopic({})", self.topic)
    }
}

impl<KS: Serde, VS: Serde> TestInputTopic<KS, VS> {
    /// Pipes a record stamped with this topic's clock (which starts at 0 and does not move by
    /// itself).
    pub fn pipe_input(&self, key: KS::Target, value: VS::Target) -> Result<()> {
        self.pipe_input_at(key, value, self.next_timestamp)
    }

    /// Pipes a record with the given timestamp.
    pub fn pipe_input_at(&self, key: KS::Target, value: VS::Target, timestamp: i64) -> Result<()> {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        let ser = |e| StreamsError::Serialization { operator: format!("test input topic {}", self.topic), source: e };
        let has_key = self.keys.serialize_nullable(&self.topic, &key, &mut k).map_err(ser)?;
        let has_value = self.values.serialize_nullable(&self.topic, &value, &mut v).map_err(ser)?;
        self.pipe_raw(has_key.then(|| k.into()), has_value.then(|| v.into()), timestamp, Vec::new())
    }

    /// Pipes raw bytes, as a producer outside the app might have written them.
    pub fn pipe_raw(&self, key: Option<Bytes>, value: Option<Bytes>, timestamp: i64, headers: Headers) -> Result<()> {
        let mut driver = self.driver.borrow_mut();
        if driver.task_for(&self.topic).is_none() {
            return Err(StreamsError::Topology(format!("topic {} is not an input of this topology", self.topic)));
        }
        driver.feed(Written { topic: self.topic.clone(), key, value, timestamp, headers })?;
        driver.settle()
    }

    /// Pipes several records.
    pub fn pipe_key_values(&self, records: impl IntoIterator<Item = (KS::Target, VS::Target)>) -> Result<()> {
        for (k, v) in records {
            self.pipe_input(k, v)?;
        }
        Ok(())
    }

    /// Moves this topic's clock: records piped with [`pipe_input`](Self::pipe_input) get this
    /// timestamp.
    pub fn set_timestamp(&mut self, timestamp: i64) {
        self.next_timestamp = timestamp;
    }
}

/// An output topic of a [`TopologyTestDriver`].
pub struct TestOutputTopic<KS, VS> {
    driver: Rc<RefCell<Driver>>,
    topic: String,
    keys: KS,
    values: VS,
}

impl<KS, VS> std::fmt::Debug for TestOutputTopic<KS, VS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestOutputTopic({})", self.topic)
    }
}

impl<KS: Serde, VS: Serde> TestOutputTopic<KS, VS> {
    /// The next unread record.
    pub fn read_record(&self) -> Result<Option<TestRecord<KS::Target, VS::Target>>> {
        let driver = self.driver.borrow();
        let next = driver.outputs.borrow_mut().unread.get_mut(&self.topic).and_then(VecDeque::pop_front);
        let Some(w) = next else { return Ok(None) };
        let de = |e| StreamsError::Serialization { operator: format!("test output topic {}", self.topic), source: e };
        let key = self.keys.deserialize_nullable(&self.topic, w.key.as_deref()).map_err(de)?;
        let value = self.values.deserialize_nullable(&self.topic, w.value.as_deref()).map_err(de)?;
        Ok(Some(TestRecord { key, value, timestamp: w.timestamp, headers: w.headers }))
    }

    /// Every unread record.
    pub fn read_records(&self) -> Result<Vec<TestRecord<KS::Target, VS::Target>>> {
        let mut out = Vec::new();
        while let Some(r) = self.read_record()? {
            out.push(r);
        }
        Ok(out)
    }

    /// Every unread record as key and value.
    pub fn read_key_values(&self) -> Result<Vec<(KS::Target, VS::Target)>> {
        Ok(self.read_records()?.into_iter().map(|r| (r.key, r.value)).collect())
    }

    /// Every unread record, the last value per key.
    pub fn read_key_values_to_map(&self) -> Result<BTreeMap<KS::Target, VS::Target>>
    where
        KS::Target: Ord,
    {
        Ok(self.read_key_values()?.into_iter().collect())
    }

    /// Whether every record was read.
    pub fn is_empty(&self) -> bool {
        self.queue_size() == 0
    }

    /// How many records are unread.
    pub fn queue_size(&self) -> usize {
        self.driver.borrow().outputs.borrow().unread.get(&self.topic).map_or(0, VecDeque::len)
    }
}
