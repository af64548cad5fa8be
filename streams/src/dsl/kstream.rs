//! [`KStream`]: a stream of independent records, and [`KGroupedStream`], a stream grouped
//! by key for aggregation.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use super::{
    Data, Graph, Grouped, Materialized, NoSerde, Produced, Repartitioned, SinkSpec, add_aggregate, add_processor,
    add_repartition, add_sink, given_or_generated,
};
use crate::dsl::ktable::KTable;
use crate::processor::nodes::{
    BranchPredicate, FilterNode, FixedKeyProcessNode, FlatMapNode, FlatMapValuesNode, MapNode, MapValuesNode,
    PassThroughNode, PeekNode, ProcessNode, SelectKeyNode, SplitNode,
};
use crate::processor::{Child, FixedKeyProcessor, Lifecycle, Node, Processor};
use crate::record::RecordContext;
use crate::serde::{Serde, Serdes};
use crate::topology::{BuildFn, Built, Instantiator, NodeId, NodeKind, TopicRef};

/// A stream of records: each one an independent event.
pub struct KStream<K, V> {
    graph: Graph,
    node: NodeId,
    /// An operator upstream may have changed keys: grouping by key needs a repartition.
    key_changed: bool,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream { graph: self.graph.clone(), node: self.node, key_changed: self.key_changed, _types: PhantomData }
    }
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KStream({})", self.graph.borrow().node_name(self.node))
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(graph: Graph, node: NodeId, key_changed: bool) -> Self {
        KStream { graph, node, key_changed, _types: PhantomData }
    }

    fn name(&self, prefix: &str) -> String {
        self.graph.borrow_mut().name(prefix)
    }

    fn then<K2: Data, V2: Data>(&self, node: NodeId, key_changed: bool) -> KStream<K2, V2> {
        KStream::new(self.graph.clone(), node, key_changed)
    }

    /// Keeps the records for which `predicate` holds.
    pub fn filter<F>(&self, predicate: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_when(predicate, true, "KSTREAM-FILTER")
    }

    /// Drops the records for which `predicate` holds.
    pub fn filter_not<F>(&self, predicate: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_when(predicate, false, "KSTREAM-FILTER")
    }

    fn filter_when<F>(&self, predicate: F, keep_when: bool, prefix: &str) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let pred = Arc::new(predicate);
        let node = add_processor::<K, V, K, V, _, _>(
            &self.graph,
            &[self.node],
            self.name(prefix),
            Vec::new(),
            move |_, children| Ok(FilterNode { pred: pred.clone(), keep_when, children, _types: PhantomData }),
        );
        self.then(node, self.key_changed)
    }

    /// Turns each record into a new key and value. Grouping by key afterwards repartitions.
    pub fn map<K2: Data, V2: Data, F>(&self, f: F) -> KStream<K2, V2>
    where
        F: Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let node = add_processor::<K, V, K2, V2, _, _>(
            &self.graph,
            &[self.node],
            self.name("KSTREAM-MAP"),
            Vec::new(),
            move |_, children| Ok(MapNode { f: f.clone(), children, _types: PhantomData }),
        );
        self.then(node, true)
    }

    /// Turns each value into a new value; keys stay, so no repartition follows.
    pub fn map_values<V2: Data, F>(&self, f: F) -> KStream<K, V2>
    where
        F: Fn(V) -> V2 + Send + Sync + 'static,
    {
        self.map_values_with_key(move |_, v| f(v))
    }

    /// Turns each value into a new value, seeing the key.
    pub fn map_values_with_key<V2: Data, F>(&self, f: F) -> KStream<K, V2>
    where
        F: Fn(&K, V) -> V2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let node = add_processor::<K, V, K, V2, _, _>(
            &self.graph,
            &[self.node],
            self.name("KSTREAM-MAPVALUES"),
            Vec::new(),
            move |_, children| Ok(MapValuesNode { f: f.clone(), children, _types: PhantomData }),
        );
        self.then(node, self.key_changed)
    }

    /// Turns each record into any number of records.
    pub fn flat_map<K2: Data, V2: Data, I, F>(&self, f: F) -> KStream<K2, V2>
    where
        F: Fn(K, V) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = (K2, V2)> + 'static,
    {
        let f = Arc::new(f);
        let node = add_processor::<K, V, K2, V2, _, _>(
            &self.graph,
            &[self.node],
            self.name("KSTREAM-FLATMAP"),
            Vec::new(),
            move |_, children| Ok(FlatMapNode { f: f.clone(), children, _types: PhantomData }),
        );
        self.then(node, true)
    }

    /// Turns each value into any number of values with the same key.
    pub fn flat_map_values<V2: Data, I, F>(&self, f: F) -> KStream<K, V2>
    where
        F: Fn(V) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = V2> + 'static,
    {
        self.flat_map_values_with_key(move |_, v| f(v))
    }

    /// Turns each value into any number of values with the same key, seeing the key.
    pub fn flat_map_values_with_key<V2: Data, I, F>(&self, f: F) -> KStream<K, V2>
    where
        F: Fn(&K, V) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = V2> + 'static,
    {
        let f = Arc::new(f);
        let node = add_processor::<K, V, K, V2, _, _>(
            &self.graph,
            &[self.node],
            self.name("KSTREAM-FLATMAPVALUES"),
            Vec::new(),
            move |_, children| Ok(FlatMapValuesNode { f: f.clone(), children, _types: PhantomData }),
        );
        self.then(node, self.key_changed)
    }

    /// Gives each record a new key computed from it.
    pub fn select_key<K2: Data, F>(&self, f: F) -> KStream<K2, V>
    where
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let node = add_processor::<K, V, K2, V, _, _>(
            &self.graph,
            &[self.node],
            self.name("KSTREAM-KEY-SELECT"),
            Vec::new(),
            move |_, children| Ok(SelectKeyNode { f: f.clone(), children, _types: PhantomData }),
        );
        self.then(node, true)
    }

    /// Calls `f` on each record and passes it on.
    pub fn peek<F>(&self, f: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let node = add_processor::<K, V, K, V, _, _>(
            &self.graph,
            &[self.node],
            self.name("KSTREAM-PEEK"),
            Vec::new(),
            move |_, children| Ok(PeekNode { f: f.clone(), children, _types: PhantomData }),
        );
        self.then(node, self.key_changed)
    }

    /// Calls `f` on each record; the end of this branch.
    pub fn foreach<F>(&self, f: F)
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        add_processor::<K, V, K, V, _, _>(
            &self.graph,
            &[self.node],
            self.name("KSTREAM-FOREACH"),
            Vec::new(),
            move |_, _| Ok(PeekNode { f: f.clone(), children: Vec::new(), _types: PhantomData }),
        );
    }

    /// Splits the stream into named branches: each record goes to the first branch whose
    /// predicate holds. Branch names are prefixed with `KSTREAM-BRANCH-` unless
    /// [`split_named`](KStream::split_named) gives a prefix.
    pub fn split(&self) -> BranchedKStream<K, V> {
        let prefix = self.name("KSTREAM-BRANCH");
        BranchedKStream { stream: self.clone(), prefix: format!("{prefix}-"), branches: Vec::new() }
    }

    /// Like [`split`](KStream::split), with `prefix` before each branch name.
    pub fn split_named(&self, prefix: &str) -> BranchedKStream<K, V> {
        BranchedKStream { stream: self.clone(), prefix: prefix.to_string(), branches: Vec::new() }
    }

    /// One stream of the records of both, in the order they arrive.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let node = add_processor::<K, V, K, V, _, _>(
            &self.graph,
            &[self.node, other.node],
            self.name("KSTREAM-MERGE"),
            Vec::new(),
            |_, children| Ok(PassThroughNode { children }),
        );
        self.then(node, self.key_changed || other.key_changed)
    }

    /// Writes the stream to `<application.id>-<name>-repartition`, partitioned by key, and
    /// reads it back: what comes after runs in a new sub-topology, partitioned by the
    /// current key.
    pub fn repartition<KS, VS>(&self, repartitioned: Repartitioned<KS, VS>) -> KStream<K, V>
    where
        KS: Serde<Target = K>,
        VS: Serde<Target = V>,
    {
        let base = given_or_generated(&self.graph, &[&repartitioned.name], "KSTREAM-REPARTITION");
        let source = add_repartition(
            &self.graph,
            self.node,
            &base,
            repartitioned.partitions,
            repartitioned.keys,
            repartitioned.values,
        );
        self.then(source, false)
    }

    /// Writes the stream to `topic`.
    pub fn to<KS, VS>(&self, topic: &str, produced: Produced<KS, VS>)
    where
        KS: Serde<Target = K>,
        VS: Serde<Target = V>,
    {
        add_sink(
            &self.graph,
            self.node,
            SinkSpec::Topic(TopicRef::External(topic.to_string())),
            produced.keys,
            produced.values,
            produced.name,
        );
    }

    /// Writes each record to the topic `choose` names for it (which must exist).
    pub fn to_dynamic<KS, VS, F>(&self, choose: F, produced: Produced<KS, VS>)
    where
        KS: Serde<Target = K>,
        VS: Serde<Target = V>,
        F: Fn(&K, &V, &RecordContext) -> String + Send + Sync + 'static,
    {
        add_sink(
            &self.graph,
            self.node,
            SinkSpec::Dynamic(Arc::new(choose)),
            produced.keys,
            produced.values,
            produced.name,
        );
    }

    /// A table of the latest value per key. If keys changed upstream, the stream is first
    /// repartitioned by key.
    pub fn to_table<KS, VS>(&self, materialized: Materialized<KS, VS>) -> KTable<K, V>
    where
        KS: Serde<Target = K>,
        VS: Serde<Target = V>,
    {
        let parent = if self.key_changed {
            let base = given_or_generated(&self.graph, &[&materialized.name], "KSTREAM-TOTABLE");
            add_repartition(&self.graph, self.node, &base, None, materialized.keys.clone(), materialized.values.clone())
        } else {
            self.node
        };
        let (node, store) = add_aggregate(
            &self.graph,
            parent,
            "KSTREAM-TOTABLE",
            &materialized,
            materialized.keys.clone(),
            materialized.values.clone(),
            |_: &K, value: V, _| Some(value),
        );
        KTable::new(self.graph.clone(), node, Some(store))
    }

    /// Groups by a new key computed from each record; aggregations repartition by it.
    pub fn group_by<K2: Data, KS, VS, F>(&self, f: F, grouped: Grouped<KS, VS>) -> KGroupedStream<KS, VS>
    where
        KS: Serde<Target = K2>,
        VS: Serde<Target = V>,
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        let selected = self.select_key(f);
        KGroupedStream { graph: self.graph.clone(), node: selected.node, repartition: true, grouped }
    }

    /// Groups by the current key; aggregations repartition only if keys changed upstream.
    pub fn group_by_key<KS, VS>(&self, grouped: Grouped<KS, VS>) -> KGroupedStream<KS, VS>
    where
        KS: Serde<Target = K>,
        VS: Serde<Target = V>,
    {
        KGroupedStream { graph: self.graph.clone(), node: self.node, repartition: self.key_changed, grouped }
    }

    /// Runs a [`Processor`] (one per task, made by `supplier`) connected to `stores`. Its
    /// output may have any keys, so grouping by key afterwards repartitions.
    pub fn process<KOut: Data, VOut: Data, P, S>(&self, supplier: S, stores: &[&str]) -> KStream<KOut, VOut>
    where
        P: Processor<K, V, KOut, VOut> + 'static,
        S: Fn() -> P + Send + Sync + 'static,
    {
        let node =
            self.add_user_processor::<KOut, VOut, _>("KSTREAM-PROCESSOR", stores, move |name, stores, children| {
                Rc::new(RefCell::new(ProcessNode {
                    name,
                    processor: supplier(),
                    stores,
                    children,
                    me: 0,
                    _types: PhantomData::<fn(K, V)>,
                }))
            });
        self.then(node, true)
    }

    /// Runs a [`FixedKeyProcessor`] connected to `stores`: values change, keys do not.
    pub fn process_values<VOut: Data, P, S>(&self, supplier: S, stores: &[&str]) -> KStream<K, VOut>
    where
        P: FixedKeyProcessor<K, V, VOut> + 'static,
        S: Fn() -> P + Send + Sync + 'static,
    {
        let node =
            self.add_user_processor::<K, VOut, _>("KSTREAM-PROCESSVALUES", stores, move |name, stores, children| {
                Rc::new(RefCell::new(FixedKeyProcessNode {
                    name,
                    processor: supplier(),
                    stores,
                    children,
                    me: 0,
                    _types: PhantomData::<fn(V)>,
                }))
            });
        self.then(node, self.key_changed)
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    /// Adds an operator running a user processor connected to `stores`: `make` builds it
    /// for a task from its name, its stores and its children.
    fn add_user_processor<KOut: Data, VOut: Data, N>(
        &self,
        prefix: &str,
        stores: &[&str],
        make: impl Fn(String, Vec<String>, Vec<Child<KOut, VOut>>) -> Rc<RefCell<N>> + Send + Sync + 'static,
    ) -> NodeId
    where
        N: Node<K, V> + Lifecycle + 'static,
    {
        let name = self.name(prefix);
        let store_names: Vec<String> = stores.iter().map(|s| s.to_string()).collect();
        let node_name = name.clone();
        let node_stores = store_names.clone();
        let build: BuildFn = Arc::new(move |inst: &mut Instantiator<'_>, id| {
            let children = inst.children::<KOut, VOut>(id)?;
            for store in &node_stores {
                inst.store(store)?;
            }
            let node = make(node_name.clone(), node_stores.clone(), children);
            inst.add_lifecycle(node.clone());
            Ok(Built::Node(Box::new(node as Child<K, V>)))
        });
        self.graph.borrow_mut().add(name, NodeKind::Processor, &[self.node], store_names, build)
    }
}

/// The branches of a [`KStream::split`], being defined.
pub struct BranchedKStream<K, V> {
    stream: KStream<K, V>,
    prefix: String,
    branches: Vec<(String, Option<BranchPredicate<K, V>>)>,
}

impl<K, V> std::fmt::Debug for BranchedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchedKStream").field("prefix", &self.prefix).finish()
    }
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    /// A branch for the records `predicate` takes (that no earlier branch took).
    pub fn branch<F>(mut self, name: &str, predicate: F) -> Self
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.branches.push((format!("{}{name}", self.prefix), Some(Arc::new(predicate))));
        self
    }

    /// Ends with a branch for every record no other branch took.
    pub fn default_branch(mut self, name: &str) -> BTreeMap<String, KStream<K, V>> {
        self.branches.push((format!("{}{name}", self.prefix), None));
        self.finish()
    }

    /// Ends without a default branch: records no branch takes are dropped.
    pub fn no_default_branch(self) -> BTreeMap<String, KStream<K, V>> {
        self.finish()
    }

    fn finish(self) -> BTreeMap<String, KStream<K, V>> {
        let graph = self.stream.graph.clone();
        let predicates: Vec<Option<BranchPredicate<K, V>>> = self.branches.iter().map(|(_, p)| p.clone()).collect();
        let split_name = format!("{}SPLIT", self.prefix);
        // The split operator sends each record to one branch operator: its children, in
        // branch order.
        let split = add_processor::<K, V, K, V, _, _>(
            &graph,
            &[self.stream.node],
            split_name,
            Vec::new(),
            move |_, children| Ok(SplitNode { branches: predicates.iter().cloned().zip(children).collect() }),
        );
        let mut out = BTreeMap::new();
        for (name, _) in self.branches {
            let node = add_processor::<K, V, K, V, _, _>(&graph, &[split], name.clone(), Vec::new(), |_, children| {
                Ok(PassThroughNode { children })
            });
            if out.insert(name.clone(), KStream::new(graph.clone(), node, self.stream.key_changed)).is_some() {
                graph.borrow_mut().error(format!("split: two branches are named {name}"));
            }
        }
        out
    }
}

/// A stream grouped by key, ready for aggregation.
pub struct KGroupedStream<KS, VS> {
    graph: Graph,
    node: NodeId,
    repartition: bool,
    grouped: Grouped<KS, VS>,
}

impl<KS, VS> std::fmt::Debug for KGroupedStream<KS, VS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedStream").field("repartition", &self.repartition).finish()
    }
}

impl<KS, VS> KGroupedStream<KS, VS>
where
    KS: Serde,
    VS: Serde,
    KS::Target: Data,
    VS::Target: Data,
{
    /// The node the aggregation reads: after the repartition topic if one is needed, named
    /// after the grouping, else the store.
    fn input<MK, MV>(&self, materialized: &Materialized<MK, MV>) -> NodeId {
        if !self.repartition {
            return self.node;
        }
        let base =
            given_or_generated(&self.graph, &[&self.grouped.name, &materialized.name], "KSTREAM-AGGREGATE-STATE-STORE");
        add_repartition(&self.graph, self.node, &base, None, self.grouped.keys.clone(), self.grouped.values.clone())
    }

    /// Counts the records per key.
    pub fn count(&self, materialized: Materialized) -> KTable<KS::Target, i64> {
        let input = self.input(&materialized);
        let (node, store) = add_aggregate(
            &self.graph,
            input,
            "KSTREAM-AGGREGATE",
            &materialized,
            self.grouped.keys.clone(),
            Serdes::i64(),
            |_: &KS::Target, _: VS::Target, count: Option<i64>| Some(count.unwrap_or(0) + 1),
        );
        KTable::new(self.graph.clone(), node, Some(store))
    }

    /// Combines the values per key with `reducer(aggregate, value)`; the first value is the
    /// first aggregate.
    pub fn reduce<F>(&self, reducer: F, materialized: Materialized) -> KTable<KS::Target, VS::Target>
    where
        F: Fn(VS::Target, VS::Target) -> VS::Target + Send + Sync + 'static,
    {
        let input = self.input(&materialized);
        let (node, store) = add_aggregate(
            &self.graph,
            input,
            "KSTREAM-REDUCE",
            &materialized,
            self.grouped.keys.clone(),
            self.grouped.values.clone(),
            move |_: &KS::Target, value: VS::Target, current: Option<VS::Target>| {
                Some(match current {
                    Some(aggregate) => reducer(aggregate, value),
                    None => value,
                })
            },
        );
        KTable::new(self.graph.clone(), node, Some(store))
    }

    /// Folds the values per key into an aggregate: `initializer()` to start,
    /// `aggregator(key, value, aggregate)` per record. The aggregate's serde is the
    /// materialized value serde.
    pub fn aggregate<AS, I, A>(
        &self,
        initializer: I,
        aggregator: A,
        materialized: Materialized<NoSerde, AS>,
    ) -> KTable<KS::Target, AS::Target>
    where
        AS: Serde,
        AS::Target: Data,
        I: Fn() -> AS::Target + Send + Sync + 'static,
        A: Fn(&KS::Target, VS::Target, AS::Target) -> AS::Target + Send + Sync + 'static,
    {
        let input = self.input(&materialized);
        let (node, store) = add_aggregate(
            &self.graph,
            input,
            "KSTREAM-AGGREGATE",
            &materialized,
            self.grouped.keys.clone(),
            materialized.values.clone(),
            move |key: &KS::Target, value: VS::Target, current: Option<AS::Target>| {
                Some(aggregator(key, value, current.unwrap_or_else(&initializer)))
            },
        );
        KTable::new(self.graph.clone(), node, Some(store))
    }
}
