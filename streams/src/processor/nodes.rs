//! The stateless operators, sources, sinks, and the wrappers that run user processors.
//!
//! Operators are generic over the user's closures, which they hold in an `Arc` shared by
//! all tasks; calling one is a direct, inlinable call.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use freshet_log::client::ConsumerRecord;

use super::{
    Child, ContextCore, FixedKeyContext, FixedKeyProcessor, FixedKeyRecord, Lifecycle, Node, Processor,
    ProcessorContext, Punctuator, forward,
};
use crate::config::DeserializationResponse;
use crate::error::{Result, StreamsError};
use crate::record::{Record, RecordContext};
use crate::serde::Serde;
use crate::task::context::{OutRecord, TaskContext};

/// Picks a record's event time.
pub trait TimestampExtractor: Send + Sync {
    /// The record's timestamp in ms. `partition_time` is the largest timestamp seen on the
    /// record's partition so far (-1 before the first). A negative result makes the task
    /// skip the record, with a warning and a count in its metrics.
    fn extract(&self, record: &ConsumerRecord, partition_time: i64) -> i64;
}

/// The default: the timestamp the record carries (the producer's or the broker's).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordTimestamp;

impl TimestampExtractor for RecordTimestamp {
    fn extract(&self, record: &ConsumerRecord, _partition_time: i64) -> i64 {
        record.timestamp
    }
}

/// The time of processing, ignoring what the record carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallclockTimestamp;

impl TimestampExtractor for WallclockTimestamp {
    fn extract(&self, _record: &ConsumerRecord, _partition_time: i64) -> i64 {
        freshet_log::time::Clock::now_ms(&freshet_log::time::SystemClock)
    }
}

pub(crate) type TimestampExtractorRef = Arc<dyn TimestampExtractor>;

/// A source as the task drives it: raw records in.
/// The most keys a source passes on in one prefetch hint.
pub(crate) const PREFETCH_MAX: usize = 16;

pub(crate) trait RawSource {
    fn extract_timestamp(&self, record: &ConsumerRecord, partition_time: i64) -> i64;
    fn process_raw(&mut self, ctx: &mut TaskContext, record: ConsumerRecord, timestamp: i64) -> Result<()>;
    /// Passes the keys of coming records to the operators right after the source (see
    /// [`Node::prefetch_keys`]). An aggregation after a repartition topic keys its store
    /// with the bytes the topic has; elsewhere the hint is merely useless.
    fn prefetch(&self, records: &[ConsumerRecord]);
}

pub(crate) struct SourceNode<KS: Serde, VS: Serde> {
    pub name: String,
    pub keys: KS,
    pub values: VS,
    pub extractor: TimestampExtractorRef,
    pub children: Vec<Child<KS::Target, VS::Target>>,
}

impl<KS: Serde, VS: Serde> RawSource for SourceNode<KS, VS>
where
    KS::Target: Clone + 'static,
    VS::Target: Clone + 'static,
{
    fn extract_timestamp(&self, record: &ConsumerRecord, partition_time: i64) -> i64 {
        self.extractor.extract(record, partition_time)
    }

    fn prefetch(&self, records: &[ConsumerRecord]) {
        let mut keys: [&[u8]; PREFETCH_MAX] = [&[]; PREFETCH_MAX];
        let mut n = 0;
        for key in records.iter().filter_map(|r| r.key.as_deref()).take(PREFETCH_MAX) {
            keys[n] = key;
            n += 1;
        }
        for child in &self.children {
            // A child busy with a record (a loop in the topology) gets no hint.
            if let Ok(child) = child.try_borrow() {
                child.prefetch_keys(&keys[..n]);
            }
        }
    }

    fn process_raw(&mut self, ctx: &mut TaskContext, record: ConsumerRecord, timestamp: i64) -> Result<()> {
        let decoded = self
            .keys
            .deserialize_nullable(&record.topic, record.key.as_deref())
            .and_then(|k| self.values.deserialize_nullable(&record.topic, record.value.as_deref()).map(|v| (k, v)));
        let (key, value) = match decoded {
            Ok(kv) => kv,
            Err(e) => {
                return match ctx.deserialization_handler.handle(&record, &e) {
                    DeserializationResponse::Continue => {
                        ctx.metrics.skipped += 1;
                        tracing::warn!(
                            task = %ctx.task, source = %self.name, topic = %record.topic, partition = record.partition,
                            offset = record.offset, error = %e, "skipping a record that does not deserialize"
                        );
                        Ok(())
                    }
                    DeserializationResponse::Fail => Err(StreamsError::Deserialization {
                        topic: record.topic.to_string(),
                        partition: record.partition,
                        offset: record.offset,
                        source: e,
                    }),
                };
            }
        };
        ctx.metrics.processed += 1;
        forward(&self.children, ctx, Record { key, value, timestamp, headers: record.headers })
    }
}

/// Picks a sink's topic per record.
pub(crate) type TopicChooser<K, V> = Arc<dyn Fn(&K, &V, &RecordContext) -> String + Send + Sync>;

/// Where a sink sends a record.
pub(crate) enum SinkTopic<K, V> {
    Static(String),
    Dynamic(TopicChooser<K, V>),
}

pub(crate) struct SinkNode<KS: Serde, VS: Serde> {
    pub name: String,
    pub topic: SinkTopic<KS::Target, VS::Target>,
    pub keys: KS,
    pub values: VS,
}

impl<KS: Serde, VS: Serde> Node<KS::Target, VS::Target> for SinkNode<KS, VS> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<KS::Target, VS::Target>) -> Result<()> {
        let dynamic;
        let topic = match &self.topic {
            SinkTopic::Static(t) => t.as_str(),
            SinkTopic::Dynamic(choose) => {
                dynamic = choose(&record.key, &record.value, &ctx.record);
                dynamic.as_str()
            }
        };
        let mut key_buf = std::mem::take(&mut ctx.key_buf);
        let mut value_buf = std::mem::take(&mut ctx.value_buf);
        key_buf.clear();
        value_buf.clear();
        let encoded = self.keys.serialize_nullable(topic, &record.key, &mut key_buf).and_then(|has_key| {
            self.values.serialize_nullable(topic, &record.value, &mut value_buf).map(|has_value| (has_key, has_value))
        });
        let result = match encoded {
            Ok((has_key, has_value)) => ctx.collector.send(OutRecord {
                topic,
                partition: None,
                key: has_key.then_some(key_buf.as_slice()),
                value: has_value.then_some(value_buf.as_slice()),
                timestamp: record.timestamp,
                headers: &record.headers,
            }),
            Err(e) => Err(StreamsError::Serialization { operator: self.name.clone(), source: e }),
        };
        ctx.key_buf = key_buf;
        ctx.value_buf = value_buf;
        result
    }
}

macro_rules! stateless_node {
    ($name:ident<$($g:ident),*> { $($field:ident : $ty:ty),* }) => {
        pub(crate) struct $name<$($g),*> {
            $(pub $field: $ty,)*
            pub _types: PhantomData<fn() -> ($($g,)*)>,
        }
    };
}

stateless_node!(FilterNode<K, V, F> { pred: Arc<F>, keep_when: bool, children: Vec<Child<K, V>> });

impl<K: Clone, V: Clone, F: Fn(&K, &V) -> bool> Node<K, V> for FilterNode<K, V, F> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        if (self.pred)(&record.key, &record.value) == self.keep_when {
            forward(&self.children, ctx, record)
        } else {
            Ok(())
        }
    }
}

stateless_node!(MapNode<K, V, K2, V2, F> { f: Arc<F>, children: Vec<Child<K2, V2>> });

impl<K, V, K2: Clone, V2: Clone, F: Fn(K, V) -> (K2, V2)> Node<K, V> for MapNode<K, V, K2, V2, F> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        let (key, value) = (self.f)(record.key, record.value);
        forward(&self.children, ctx, Record { key, value, timestamp: record.timestamp, headers: record.headers })
    }
}

stateless_node!(MapValuesNode<K, V, V2, F> { f: Arc<F>, children: Vec<Child<K, V2>> });

impl<K: Clone, V, V2: Clone, F: Fn(&K, V) -> V2> Node<K, V> for MapValuesNode<K, V, V2, F> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        let value = (self.f)(&record.key, record.value);
        forward(
            &self.children,
            ctx,
            Record { key: record.key, value, timestamp: record.timestamp, headers: record.headers },
        )
    }
}

stateless_node!(FlatMapNode<K, V, K2, V2, F> { f: Arc<F>, children: Vec<Child<K2, V2>> });

impl<K, V, K2: Clone, V2: Clone, I, F> Node<K, V> for FlatMapNode<K, V, K2, V2, F>
where
    F: Fn(K, V) -> I,
    I: IntoIterator<Item = (K2, V2)>,
{
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        for (key, value) in (self.f)(record.key, record.value) {
            forward(
                &self.children,
                ctx,
                Record { key, value, timestamp: record.timestamp, headers: record.headers.clone() },
            )?;
        }
        Ok(())
    }
}

stateless_node!(FlatMapValuesNode<K, V, V2, F> { f: Arc<F>, children: Vec<Child<K, V2>> });

impl<K: Clone, V, V2: Clone, I, F> Node<K, V> for FlatMapValuesNode<K, V, V2, F>
where
    F: Fn(&K, V) -> I,
    I: IntoIterator<Item = V2>,
{
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        for value in (self.f)(&record.key, record.value) {
            let out =
                Record { key: record.key.clone(), value, timestamp: record.timestamp, headers: record.headers.clone() };
            forward(&self.children, ctx, out)?;
        }
        Ok(())
    }
}

stateless_node!(SelectKeyNode<K, V, K2, F> { f: Arc<F>, children: Vec<Child<K2, V>> });

impl<K, V: Clone, K2: Clone, F: Fn(&K, &V) -> K2> Node<K, V> for SelectKeyNode<K, V, K2, F> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        let key = (self.f)(&record.key, &record.value);
        forward(&self.children, ctx, record.with_key(key))
    }
}

stateless_node!(PeekNode<K, V, F> { f: Arc<F>, children: Vec<Child<K, V>> });

impl<K: Clone, V: Clone, F: Fn(&K, &V)> Node<K, V> for PeekNode<K, V, F> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        (self.f)(&record.key, &record.value);
        forward(&self.children, ctx, record)
    }
}

/// Forwards as it is: the node behind `merge` and behind each branch of `split`.
pub(crate) struct PassThroughNode<K, V> {
    pub children: Vec<Child<K, V>>,
}

impl<K: Clone, V: Clone> Node<K, V> for PassThroughNode<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        forward(&self.children, ctx, record)
    }
}

pub(crate) type BranchPredicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// `split`: each record goes to the first branch whose predicate holds, or to the default
/// branch, or nowhere.
pub(crate) struct SplitNode<K, V> {
    pub branches: Vec<Branch<K, V>>,
}

/// A branch of a split: its predicate (none for the default branch) and its operator.
pub(crate) type Branch<K, V> = (Option<BranchPredicate<K, V>>, Child<K, V>);

impl<K, V> Node<K, V> for SplitNode<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        for (predicate, child) in &self.branches {
            if predicate.as_ref().is_none_or(|p| p(&record.key, &record.value)) {
                return child.borrow_mut().process(ctx, record);
            }
        }
        Ok(())
    }
}

/// Runs a user [`Processor`].
pub(crate) struct ProcessNode<P, KIn, VIn, KOut, VOut> {
    pub name: String,
    pub processor: P,
    pub stores: Vec<String>,
    pub children: Vec<Child<KOut, VOut>>,
    /// This operator's index among the task's lifecycles, set at init.
    pub me: usize,
    pub _types: PhantomData<fn(KIn, VIn)>,
}

impl<P, KIn, VIn, KOut: Clone + 'static, VOut: Clone + 'static> ProcessNode<P, KIn, VIn, KOut, VOut> {
    fn context<'a>(
        name: &'a str,
        stores: &'a [String],
        children: &'a [Child<KOut, VOut>],
        ctx: &'a mut TaskContext,
        me: usize,
        in_init: bool,
    ) -> ProcessorContext<'a, KOut, VOut> {
        ProcessorContext::new(ContextCore { task: ctx, node: me, name, stores, in_init }, children)
    }
}

impl<P, KIn, VIn, KOut, VOut> Node<KIn, VIn> for ProcessNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KOut: Clone + 'static,
    VOut: Clone + 'static,
{
    fn process(&mut self, ctx: &mut TaskContext, record: Record<KIn, VIn>) -> Result<()> {
        let mut pctx = Self::context(&self.name, &self.stores, &self.children, ctx, self.me, false);
        self.processor.process(&mut pctx, record)
    }
}

impl<P, KIn, VIn, KOut, VOut> Lifecycle for ProcessNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KOut: Clone + 'static,
    VOut: Clone + 'static,
{
    fn init(&mut self, ctx: &mut TaskContext, me: usize) -> Result<()> {
        self.me = me;
        let mut pctx = Self::context(&self.name, &self.stores, &self.children, ctx, me, true);
        self.processor.init(&mut pctx)
    }

    fn punctuate(&mut self, ctx: &mut TaskContext, me: usize, punctuator: Punctuator, timestamp: i64) -> Result<()> {
        let mut pctx = Self::context(&self.name, &self.stores, &self.children, ctx, me, false);
        self.processor.punctuate(&mut pctx, punctuator, timestamp)
    }

    fn close(&mut self) {
        self.processor.close();
    }
}

/// Runs a user [`FixedKeyProcessor`].
pub(crate) struct FixedKeyProcessNode<P, K, VIn, VOut> {
    pub name: String,
    pub processor: P,
    pub stores: Vec<String>,
    pub children: Vec<Child<K, VOut>>,
    pub me: usize,
    pub _types: PhantomData<fn(VIn)>,
}

impl<P, K: Clone + 'static, VIn, VOut: Clone + 'static> FixedKeyProcessNode<P, K, VIn, VOut> {
    fn context<'a>(
        name: &'a str,
        stores: &'a [String],
        children: &'a [Child<K, VOut>],
        ctx: &'a mut TaskContext,
        me: usize,
        in_init: bool,
    ) -> FixedKeyContext<'a, K, VOut> {
        FixedKeyContext::new(ContextCore { task: ctx, node: me, name, stores, in_init }, children)
    }
}

impl<P, K, VIn, VOut> Node<K, VIn> for FixedKeyProcessNode<P, K, VIn, VOut>
where
    P: FixedKeyProcessor<K, VIn, VOut>,
    K: Clone + 'static,
    VOut: Clone + 'static,
{
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, VIn>) -> Result<()> {
        let mut pctx = Self::context(&self.name, &self.stores, &self.children, ctx, self.me, false);
        self.processor.process(&mut pctx, FixedKeyRecord::from_record(record))
    }
}

impl<P, K, VIn, VOut> Lifecycle for FixedKeyProcessNode<P, K, VIn, VOut>
where
    P: FixedKeyProcessor<K, VIn, VOut>,
    K: Clone + 'static,
    VOut: Clone + 'static,
{
    fn init(&mut self, ctx: &mut TaskContext, me: usize) -> Result<()> {
        self.me = me;
        let mut pctx = Self::context(&self.name, &self.stores, &self.children, ctx, me, true);
        self.processor.init(&mut pctx)
    }

    fn punctuate(&mut self, ctx: &mut TaskContext, me: usize, punctuator: Punctuator, timestamp: i64) -> Result<()> {
        let mut pctx = Self::context(&self.name, &self.stores, &self.children, ctx, me, false);
        self.processor.punctuate(&mut pctx, punctuator, timestamp)
    }

    fn close(&mut self) {
        self.processor.close();
    }
}

/// Wraps a node into the shared pointer its parents hold.
pub(crate) fn child<K, V, N: Node<K, V> + 'static>(node: N) -> Rc<RefCell<N>> {
    Rc::new(RefCell::new(node))
}
