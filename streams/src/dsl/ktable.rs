//! [`KTable`]: a changelog stream read as a table (the latest value per key), its grouped
//! form [`KGroupedTable`], and [`GlobalKTable`].
//!
//! Table operators pass [`Change`](crate::record::Change)s: each update carries the new
//! value and the old one, so that a grouped table's aggregation can take the old value out
//! (subtractor) before putting the new one in (adder).

use std::marker::PhantomData;
use std::sync::Arc;

use super::{
    Data, Graph, Grouped, KStream, Materialized, NoSerde, add_aggregate, add_processor, add_repartition,
    given_or_generated,
};
use crate::processor::stateful::{
    GroupedChange, GroupedChangeSerde, TableFilterNode, TableGroupByNode, TableMapValuesNode, ToStreamNode,
};
use crate::record::Change;
use crate::serde::{Serde, Serdes};
use crate::topology::NodeId;

/// A table: the latest value per key.
pub struct KTable<K, V> {
    graph: Graph,
    node: NodeId,
    store: Option<String>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable { graph: self.graph.clone(), node: self.node, store: self.store.clone(), _types: PhantomData }
    }
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KTable({}, store {:?})", self.graph.borrow().node_name(self.node), self.store)
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn new(graph: Graph, node: NodeId, store: Option<String>) -> Self {
        KTable { graph, node, store, _types: PhantomData }
    }

    /// The store that holds this table, if it is materialized (queryable by this name).
    pub fn queryable_store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    fn name(&self, prefix: &str) -> String {
        self.graph.borrow_mut().name(prefix)
    }

    /// The rows for which `predicate` holds; a row that stops matching is deleted.
    pub fn filter<F>(&self, predicate: F) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_when(predicate, true)
    }

    /// The rows for which `predicate` does not hold.
    pub fn filter_not<F>(&self, predicate: F) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_when(predicate, false)
    }

    fn filter_when<F>(&self, predicate: F, keep_when: bool) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let pred = Arc::new(predicate);
        let node = add_processor::<K, Change<V>, K, Change<V>, _, _>(
            &self.graph,
            &[self.node],
            self.name("KTABLE-FILTER"),
            Vec::new(),
            move |_, children| Ok(TableFilterNode { pred: pred.clone(), keep_when, children }),
        );
        KTable::new(self.graph.clone(), node, None)
    }

    /// Each row's value mapped by `f`.
    pub fn map_values<V2: Data, F>(&self, f: F) -> KTable<K, V2>
    where
        F: Fn(V) -> V2 + Send + Sync + 'static,
    {
        self.map_values_with_key(move |_, v| f(v))
    }

    /// Each row's value mapped by `f`, which sees the key.
    pub fn map_values_with_key<V2: Data, F>(&self, f: F) -> KTable<K, V2>
    where
        F: Fn(&K, V) -> V2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let node = add_processor::<K, Change<V>, K, Change<V2>, _, _>(
            &self.graph,
            &[self.node],
            self.name("KTABLE-MAPVALUES"),
            Vec::new(),
            move |_, children| Ok(TableMapValuesNode { f: f.clone(), children, _types: PhantomData }),
        );
        KTable::new(self.graph.clone(), node, None)
    }

    /// The table's updates as a stream: the new value of each update, `None` for a delete.
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let node = add_processor::<K, Change<V>, K, Option<V>, _, _>(
            &self.graph,
            &[self.node],
            self.name("KTABLE-TOSTREAM"),
            Vec::new(),
            |_, children| Ok(ToStreamNode { children }),
        );
        KStream::new(self.graph.clone(), node, false)
    }

    /// Regroups the rows by the key `f` computes, for aggregation with adders and
    /// subtractors. Always repartitions.
    pub fn group_by<KS, VS, F>(&self, f: F, grouped: Grouped<KS, VS>) -> KGroupedTable<KS, VS>
    where
        KS: Serde,
        VS: Serde,
        KS::Target: Data,
        VS::Target: Data,
        F: Fn(K, V) -> (KS::Target, VS::Target) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let node = add_processor::<K, Change<V>, KS::Target, GroupedChange<VS::Target>, _, _>(
            &self.graph,
            &[self.node],
            self.name("KTABLE-SELECT"),
            Vec::new(),
            move |_, children| Ok(TableGroupByNode { f: f.clone(), children, _types: PhantomData }),
        );
        KGroupedTable { graph: self.graph.clone(), node, grouped }
    }
}

/// A table regrouped by a new key, ready for aggregation.
pub struct KGroupedTable<KS, VS> {
    graph: Graph,
    node: NodeId,
    grouped: Grouped<KS, VS>,
}

impl<KS, VS> std::fmt::Debug for KGroupedTable<KS, VS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedTable").finish()
    }
}

impl<KS, VS> KGroupedTable<KS, VS>
where
    KS: Serde,
    VS: Serde,
    KS::Target: Data,
    VS::Target: Data,
{
    fn input<MK, MV>(&self, materialized: &Materialized<MK, MV>) -> NodeId {
        let base =
            given_or_generated(&self.graph, &[&self.grouped.name, &materialized.name], "KTABLE-AGGREGATE-STATE-STORE");
        add_repartition(
            &self.graph,
            self.node,
            &base,
            None,
            self.grouped.keys.clone(),
            GroupedChangeSerde(self.grouped.values.clone()),
        )
    }

    /// Counts the rows per new key.
    pub fn count(&self, materialized: Materialized) -> KTable<KS::Target, i64> {
        let input = self.input(&materialized);
        let (node, store) = add_aggregate(
            &self.graph,
            input,
            "KTABLE-AGGREGATE",
            &materialized,
            self.grouped.keys.clone(),
            Serdes::i64(),
            |_: &KS::Target, change: GroupedChange<VS::Target>, count: Option<i64>| {
                let count = count.unwrap_or(0);
                Some(match change {
                    GroupedChange::Add(_) => count + 1,
                    GroupedChange::Subtract(_) => count - 1,
                })
            },
        );
        KTable::new(self.graph.clone(), node, Some(store))
    }

    /// Combines the rows per new key: `adder(aggregate, new row)`, `subtractor(aggregate,
    /// old row)`.
    pub fn reduce<A, S>(&self, adder: A, subtractor: S, materialized: Materialized) -> KTable<KS::Target, VS::Target>
    where
        A: Fn(VS::Target, VS::Target) -> VS::Target + Send + Sync + 'static,
        S: Fn(VS::Target, VS::Target) -> VS::Target + Send + Sync + 'static,
    {
        let input = self.input(&materialized);
        let (node, store) = add_aggregate(
            &self.graph,
            input,
            "KTABLE-REDUCE",
            &materialized,
            self.grouped.keys.clone(),
            self.grouped.values.clone(),
            move |_: &KS::Target, change: GroupedChange<VS::Target>, current: Option<VS::Target>| match (
                change, current,
            ) {
                (GroupedChange::Add(v), None) => Some(v),
                (GroupedChange::Add(v), Some(agg)) => Some(adder(agg, v)),
                (GroupedChange::Subtract(v), Some(agg)) => Some(subtractor(agg, v)),
                (GroupedChange::Subtract(_), None) => None,
            },
        );
        KTable::new(self.graph.clone(), node, Some(store))
    }

    /// Folds the rows per new key: `initializer()` to start, `adder(key, new row, aggregate)`
    /// and `subtractor(key, old row, aggregate)` per update.
    pub fn aggregate<AS, I, A, S>(
        &self,
        initializer: I,
        adder: A,
        subtractor: S,
        materialized: Materialized<NoSerde, AS>,
    ) -> KTable<KS::Target, AS::Target>
    where
        AS: Serde,
        AS::Target: Data,
        I: Fn() -> AS::Target + Send + Sync + 'static,
        A: Fn(&KS::Target, VS::Target, AS::Target) -> AS::Target + Send + Sync + 'static,
        S: Fn(&KS::Target, VS::Target, AS::Target) -> AS::Target + Send + Sync + 'static,
    {
        let input = self.input(&materialized);
        let (node, store) = add_aggregate(
            &self.graph,
            input,
            "KTABLE-AGGREGATE",
            &materialized,
            self.grouped.keys.clone(),
            materialized.values.clone(),
            move |key: &KS::Target, change: GroupedChange<VS::Target>, current: Option<AS::Target>| {
                let current = current.unwrap_or_else(&initializer);
                Some(match change {
                    GroupedChange::Add(v) => adder(key, v, current),
                    GroupedChange::Subtract(v) => subtractor(key, v, current),
                })
            },
        );
        KTable::new(self.graph.clone(), node, Some(store))
    }
}

/// A table every instance holds in full ([`crate::StreamsBuilder::global_table`]).
pub struct GlobalKTable<K, V> {
    pub(crate) store: String,
    pub(crate) _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for GlobalKTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GlobalKTable({})", self.store)
    }
}

impl<K, V> GlobalKTable<K, V> {
    /// The store that holds it (queryable by this name).
    pub fn queryable_store_name(&self) -> &str {
        &self.store
    }
}
