//! The DSL: [`StreamsBuilder`] makes sources; [`KStream`], [`KTable`] and the grouped
//! streams and tables add operators. Every call adds nodes to one graph, which
//! [`StreamsBuilder::build`] checks and turns into a [`Topology`].
//!
//! Keys and values are typed: each stream knows its key and value types, and serdes are
//! given where records cross a topic or land in a store, so type mistakes are compile
//! errors.

mod kstream;
mod ktable;
mod options;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

pub use kstream::{BranchedKStream, KGroupedStream, KStream};
pub use ktable::{GlobalKTable, KGroupedTable, KTable};
pub use options::{Consumed, Grouped, Materialized, NoSerde, Produced, Repartitioned};
use regex::Regex;

use crate::error::{Result, StreamsError};
use crate::processor::nodes::{SinkNode, SinkTopic, SourceNode, TopicChooser, child};
use crate::processor::stateful::AggregateNode;
use crate::processor::{Child, Node};
use crate::record::Change;
use crate::serde::Serde;
use crate::state::{StoreBuilder, StoreSerdes, StoreSpec};
use crate::topology::{
    BuildFn, Built, GlobalStore, Instantiator, NodeId, NodeKind, NodeSpec, RepartitionTopic, TopicRef, Topology,
};

/// What keys and values must be: cloneable (a record forwarded to two operators is
/// cloned) and owned.
pub trait Data: Clone + 'static {}
impl<T: Clone + 'static> Data for T {}

/// The graph being built, shared by the builder and every stream and table handle.
#[derive(Default)]
pub(crate) struct GraphBuilder {
    nodes: Vec<NodeSpec>,
    stores: BTreeMap<String, StoreSpec>,
    repartition_topics: BTreeMap<String, RepartitionTopic>,
    globals: Vec<GlobalStore>,
    counter: usize,
    errors: Vec<String>,
}

pub(crate) type Graph = Rc<RefCell<GraphBuilder>>;

impl GraphBuilder {
    /// Kafka's generated names: `KSTREAM-FILTER-0000000003`.
    pub fn name(&mut self, prefix: &str) -> String {
        let name = format!("{prefix}-{:010}", self.counter);
        self.counter += 1;
        name
    }

    pub fn add(
        &mut self,
        name: String,
        kind: NodeKind,
        parents: &[NodeId],
        stores: Vec<String>,
        build: BuildFn,
    ) -> NodeId {
        let id = self.nodes.len();
        if self.nodes.iter().any(|n| n.name == name) {
            self.errors.push(format!("two operators are named {name}; names must be unique"));
        }
        for &p in parents {
            self.nodes[p].children.push(id);
        }
        self.nodes.push(NodeSpec { name, kind, parents: parents.to_vec(), children: Vec::new(), stores, build });
        id
    }

    pub fn add_store(&mut self, spec: StoreSpec) {
        if self.stores.contains_key(&spec.name) {
            self.errors.push(format!("store '{}' is added twice; store names must be unique", spec.name));
            return;
        }
        self.stores.insert(spec.name.clone(), spec);
    }

    pub fn error(&mut self, message: String) {
        self.errors.push(message);
    }

    pub fn node_name(&self, id: NodeId) -> &str {
        &self.nodes[id].name
    }
}

/// Builds a topology with the DSL.
///
/// ```
/// use freshet_streams::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
/// use freshet_streams::serde::Serdes;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("lines", Consumed::with(Serdes::optional(Serdes::string()), Serdes::string()))
///     .flat_map_values(|line: String| line.to_lowercase().split_whitespace().map(str::to_string).collect::<Vec<_>>())
///     .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
///     .count(Materialized::as_("counts"))
///     .to_stream()
///     .to("word-counts", Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
/// let topology = builder.build().unwrap();
/// assert_eq!(topology.describe().matches("Sub-topology").count(), 2);
/// ```
#[derive(Default)]
pub struct StreamsBuilder {
    graph: Graph,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder").field("nodes", &self.graph.borrow().nodes.len()).finish()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StreamsBuilder::default()
    }

    /// A stream of the records of `topic`.
    pub fn stream<KS, VS>(&self, topic: &str, consumed: Consumed<KS, VS>) -> KStream<KS::Target, VS::Target>
    where
        KS: Serde,
        VS: Serde,
        KS::Target: Data,
        VS::Target: Data,
    {
        self.stream_topics(&[topic], consumed)
    }

    /// One stream of the records of several topics.
    pub fn stream_topics<KS, VS>(&self, topics: &[&str], consumed: Consumed<KS, VS>) -> KStream<KS::Target, VS::Target>
    where
        KS: Serde,
        VS: Serde,
        KS::Target: Data,
        VS::Target: Data,
    {
        let topics = topics.iter().map(|t| TopicRef::External(t.to_string())).collect();
        let node = add_source(&self.graph, topics, None, consumed);
        KStream::new(self.graph.clone(), node, false)
    }

    /// A stream of every topic whose whole name matches `pattern`, including topics created
    /// later.
    pub fn stream_pattern<KS, VS>(&self, pattern: Regex, consumed: Consumed<KS, VS>) -> KStream<KS::Target, VS::Target>
    where
        KS: Serde,
        VS: Serde,
        KS::Target: Data,
        VS::Target: Data,
    {
        let node = add_source(&self.graph, Vec::new(), Some(pattern), consumed);
        KStream::new(self.graph.clone(), node, false)
    }

    /// A table of the latest value per key of `topic` (a null value deletes the key), kept
    /// in a store. The store has its own changelog.
    pub fn table<KS, VS>(
        &self,
        topic: &str,
        consumed: Consumed<KS, VS>,
        materialized: Materialized,
    ) -> KTable<KS::Target, VS::Target>
    where
        KS: Serde,
        VS: Serde,
        KS::Target: Data,
        VS::Target: Data,
    {
        let (node, store) = self.table_source(topic, consumed, &materialized);
        KTable::new(self.graph.clone(), node, Some(store))
    }

    /// A table of all partitions of `topic`, read in full by every instance: for lookups by
    /// any key. The topic itself is the store's changelog.
    pub fn global_table<KS, VS>(
        &self,
        topic: &str,
        consumed: Consumed<KS, VS>,
        materialized: Materialized,
    ) -> GlobalKTable<KS::Target, VS::Target>
    where
        KS: Serde,
        VS: Serde,
        KS::Target: Data,
        VS::Target: Data,
    {
        // The topic is the changelog, and a cache would only delay the global copy.
        let materialized = materialized.with_logging(false).with_caching(false);
        let (node, store) = self.table_source(topic, consumed, &materialized);
        self.graph.borrow_mut().globals.push(GlobalStore { store: store.clone(), topic: topic.to_string(), node });
        GlobalKTable { store, _types: PhantomData }
    }

    /// A source of `topic` whose records update a store: the latest value per key, a null
    /// value deleting the key.
    fn table_source<KS, VS>(
        &self,
        topic: &str,
        consumed: Consumed<KS, VS>,
        materialized: &Materialized,
    ) -> (NodeId, String)
    where
        KS: Serde,
        VS: Serde,
        KS::Target: Data,
        VS::Target: Data,
    {
        let (keys, values) = (consumed.keys.clone(), consumed.values.clone());
        let optional = Consumed {
            keys: consumed.keys,
            values: crate::serde::Serdes::optional(consumed.values),
            extractor: consumed.extractor,
            name: consumed.name,
        };
        let source = add_source(&self.graph, vec![TopicRef::External(topic.to_string())], None, optional);
        add_aggregate(
            &self.graph,
            source,
            "KTABLE-SOURCE",
            materialized,
            keys,
            values,
            |_: &KS::Target, value: Option<VS::Target>, _| value,
        )
    }

    /// Adds a store for the Processor API; connect it to processors by naming it in
    /// [`KStream::process`].
    pub fn add_state_store<KS: Serde, VS: Serde>(&self, store: StoreBuilder<KS, VS>) -> &Self {
        self.graph.borrow_mut().add_store(store.into_spec());
        self
    }

    /// Checks the graph and makes the topology. Errors name the operator at fault.
    pub fn build(self) -> Result<Topology> {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        if !graph.errors.is_empty() {
            return Err(StreamsError::Topology(graph.errors.join("; ")));
        }
        if graph.nodes.is_empty() {
            return Err(StreamsError::Topology("the topology has no sources; add a stream or a table".into()));
        }
        Topology::new(graph.nodes, graph.stores, graph.repartition_topics, graph.globals)
    }
}

/// The first of `names` that is given, else a generated `<prefix>-<n>`: how repartition
/// topics are named after the grouping, the store, or nothing.
pub(crate) fn given_or_generated(graph: &Graph, names: &[&Option<String>], prefix: &str) -> String {
    match names.iter().find_map(|n| n.as_ref()) {
        Some(name) => name.clone(),
        None => graph.borrow_mut().name(prefix),
    }
}

/// Adds a source operator.
pub(crate) fn add_source<KS, VS>(
    graph: &Graph,
    topics: Vec<TopicRef>,
    pattern: Option<Regex>,
    consumed: Consumed<KS, VS>,
) -> NodeId
where
    KS: Serde,
    VS: Serde,
    KS::Target: Data,
    VS::Target: Data,
{
    let mut g = graph.borrow_mut();
    let name = consumed.name.clone().unwrap_or_else(|| g.name("KSTREAM-SOURCE"));
    let kind = NodeKind::Source { topics, pattern };
    let node_name = name.clone();
    let build: BuildFn = Arc::new(move |inst: &mut Instantiator<'_>, id| {
        let children = inst.children::<KS::Target, VS::Target>(id)?;
        Ok(Built::Source(Box::new(SourceNode {
            name: node_name.clone(),
            keys: consumed.keys.clone(),
            values: consumed.values.clone(),
            extractor: consumed.extractor.clone(),
            children,
        })))
    });
    g.add(name, kind, &[], Vec::new(), build)
}

/// Adds a sink operator after `parent`.
pub(crate) fn add_sink<KS, VS>(
    graph: &Graph,
    parent: NodeId,
    topic: SinkSpec<KS::Target, VS::Target>,
    keys: KS,
    values: VS,
    name: Option<String>,
) -> NodeId
where
    KS: Serde,
    VS: Serde,
    KS::Target: Data,
    VS::Target: Data,
{
    let mut g = graph.borrow_mut();
    let name = name.unwrap_or_else(|| g.name("KSTREAM-SINK"));
    let kind = NodeKind::Sink {
        topic: match &topic {
            SinkSpec::Topic(t) => Some(t.clone()),
            SinkSpec::Dynamic(_) => None,
        },
    };
    let node_name = name.clone();
    let build: BuildFn = Arc::new(move |inst: &mut Instantiator<'_>, _id| {
        let topic = match &topic {
            SinkSpec::Topic(t) => SinkTopic::Static(inst.topic(t)),
            SinkSpec::Dynamic(f) => SinkTopic::Dynamic(f.clone()),
        };
        let node = SinkNode { name: node_name.clone(), topic, keys: keys.clone(), values: values.clone() };
        Ok(Built::Node(Box::new(child(node) as Child<KS::Target, VS::Target>)))
    });
    g.add(name, kind, &[parent], Vec::new(), build)
}

pub(crate) enum SinkSpec<K, V> {
    Topic(TopicRef),
    Dynamic(TopicChooser<K, V>),
}

/// Writes `parent`'s records to `<application.id>-<base>-repartition` and reads them back in
/// a new sub-topology; returns the new source.
pub(crate) fn add_repartition<KS, VS>(
    graph: &Graph,
    parent: NodeId,
    base: &str,
    partitions: Option<i32>,
    keys: KS,
    values: VS,
) -> NodeId
where
    KS: Serde,
    VS: Serde,
    KS::Target: Data,
    VS::Target: Data,
{
    let topic_name = format!("{base}-repartition");
    {
        let mut g = graph.borrow_mut();
        if let Some(p) = partitions
            && p < 1
        {
            g.error(format!("repartition topic {topic_name}: partition count {p} is not positive"));
        }
        if g.repartition_topics.insert(topic_name.clone(), RepartitionTopic { partitions }).is_some() {
            g.error(format!("repartition topic {topic_name} is used twice; give the operations different names"));
        }
    }
    let topic = TopicRef::Internal(topic_name);
    add_sink(graph, parent, SinkSpec::Topic(topic.clone()), keys.clone(), values.clone(), None);
    add_source(graph, vec![topic], None, Consumed::with(keys, values))
}

/// Adds a store for `materialized` (or a generated name) and the aggregation operator that
/// keeps `update(key, input, current)` in it. Returns the operator and the store name.
pub(crate) fn add_aggregate<KS, AS, VIn, F, MK, MV>(
    graph: &Graph,
    parent: NodeId,
    prefix: &str,
    materialized: &Materialized<MK, MV>,
    keys: KS,
    values: AS,
    update: F,
) -> (NodeId, String)
where
    KS: Serde,
    AS: Serde,
    KS::Target: Data,
    AS::Target: Data,
    VIn: 'static,
    F: Fn(&KS::Target, VIn, Option<AS::Target>) -> Option<AS::Target> + Send + Sync + 'static,
{
    let mut g = graph.borrow_mut();
    let store_name = materialized.name.clone().unwrap_or_else(|| g.name(&format!("{prefix}-STATE-STORE")));
    let name = g.name(prefix);
    g.add_store(StoreSpec {
        name: store_name.clone(),
        kind: materialized.kind,
        caching: materialized.caching,
        logging: materialized.logging,
        changelog_config: materialized.changelog_config.clone(),
        types: (std::any::type_name::<KS::Target>(), std::any::type_name::<AS::Target>()),
        serdes: Arc::new(StoreSerdes::<KS::Target, AS::Target> {
            keys: Arc::new(keys.clone()),
            values: Arc::new(values.clone()),
        }),
    });
    let update = Arc::new(update);
    let node_name = name.clone();
    let store = store_name.clone();
    let build: BuildFn = Arc::new(move |inst: &mut Instantiator<'_>, id| {
        let children = inst.children::<KS::Target, Change<AS::Target>>(id)?;
        let task_store = inst.store(&store)?;
        let cached = task_store.store.lock().cache_enabled();
        let node = Rc::new(RefCell::new(AggregateNode {
            name: node_name.clone(),
            store: task_store,
            keys: keys.clone(),
            values: values.clone(),
            update: update.clone(),
            cached,
            children,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
            _input: PhantomData::<fn(VIn)>,
        }));
        if cached {
            inst.add_flush(node.clone());
        }
        let as_child: Child<KS::Target, VIn> = node;
        Ok(Built::Node(Box::new(as_child)))
    });
    let id = g.add(name, NodeKind::Processor, &[parent], vec![store_name.clone()], build);
    (id, store_name)
}

/// Adds a processor node whose operator `make` builds from its children.
pub(crate) fn add_processor<KIn, VIn, KOut, VOut, N, M>(
    graph: &Graph,
    parents: &[NodeId],
    name: String,
    stores: Vec<String>,
    make: M,
) -> NodeId
where
    KIn: 'static,
    VIn: 'static,
    KOut: 'static,
    VOut: 'static,
    N: Node<KIn, VIn> + 'static,
    M: Fn(&mut Instantiator<'_>, Vec<Child<KOut, VOut>>) -> Result<N> + Send + Sync + 'static,
{
    let build: BuildFn = Arc::new(move |inst: &mut Instantiator<'_>, id| {
        let children = inst.children::<KOut, VOut>(id)?;
        let node = make(inst, children)?;
        Ok(Built::Node(Box::new(child(node) as Child<KIn, VIn>)))
    });
    graph.borrow_mut().add(name, NodeKind::Processor, parents, stores, build)
}
