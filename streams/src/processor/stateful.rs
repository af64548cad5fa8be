//! The stateful DSL operators: aggregations (of streams and of tables), table sources, and
//! the operators on table changes.
//!
//! An aggregation keeps its result per key in a store. With the record cache on, results
//! wait in the cache and only the last per key is written to the store and the changelog
//! and forwarded, when the cache is flushed (commit, or a full cache). With it off, each
//! update goes through and is forwarded at once.

use std::marker::PhantomData;
use std::sync::Arc;

use super::{Child, Flush, Node, forward};
use crate::error::{Result, StreamsError};
use crate::record::{Change, Record};
use crate::serde::{Serde, SerdeError, serde_error};
use crate::state::Flushed;
use crate::task::context::{TaskContext, TaskStore};

/// An update of a table aggregation, as it travels through the repartition topic after
/// `KTable::group_by`: the old value to take out, or the new value to put in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupedChange<V> {
    Add(V),
    Subtract(V),
}

/// A one-byte tag (0 add, 1 subtract), then the value's own bytes.
#[derive(Debug, Clone)]
pub(crate) struct GroupedChangeSerde<S>(pub S);

impl<S: Serde> Serde for GroupedChangeSerde<S> {
    type Target = GroupedChange<S::Target>;

    fn serialize(&self, topic: &str, value: &Self::Target, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        let (tag, v) = match value {
            GroupedChange::Add(v) => (0u8, v),
            GroupedChange::Subtract(v) => (1u8, v),
        };
        out.push(tag);
        self.0.serialize(topic, v, out)
    }

    fn deserialize(&self, topic: &str, data: &[u8]) -> Result<Self::Target, SerdeError> {
        match data.split_first() {
            Some((0, rest)) => self.0.deserialize(topic, rest).map(GroupedChange::Add),
            Some((1, rest)) => self.0.deserialize(topic, rest).map(GroupedChange::Subtract),
            Some((tag, _)) => {
                Err(serde_error::<Self::Target>("deserialize", topic, format!("unknown change tag {tag}")))
            }
            None => Err(serde_error::<Self::Target>("deserialize", topic, "empty")),
        }
    }
}

/// Keeps `F(key, input, current) -> new` per key in a store and forwards the changes.
/// `None` from `F` deletes the key. Counts, reductions, aggregations and table sources are
/// all this operator with different `F`s.
pub(crate) struct AggregateNode<KS: Serde, AS: Serde, VIn, F> {
    pub name: String,
    pub store: TaskStore,
    pub keys: KS,
    pub values: AS,
    pub update: Arc<F>,
    pub cached: bool,
    pub children: Vec<Child<KS::Target, Change<AS::Target>>>,
    pub key_buf: Vec<u8>,
    pub value_buf: Vec<u8>,
    pub _input: PhantomData<fn(VIn)>,
}

impl<KS, AS, VIn, F> AggregateNode<KS, AS, VIn, F>
where
    KS: Serde,
    AS: Serde,
    KS::Target: Clone + 'static,
    AS::Target: Clone + 'static,
{
    fn serde_error(&self, e: SerdeError) -> StreamsError {
        StreamsError::Serialization { operator: self.name.clone(), source: e }
    }

    fn decode_value(&self, bytes: Option<&[u8]>) -> Result<Option<AS::Target>> {
        bytes.map(|b| self.values.deserialize(&self.store.changelog, b)).transpose().map_err(|e| self.serde_error(e))
    }

    /// Forwards what a cache flush wrote down.
    fn forward_flushed(&mut self, ctx: &mut TaskContext, flushed: Vec<Flushed>) -> Result<()> {
        for entry in flushed {
            let topic = &self.store.changelog;
            let key = self.keys.deserialize(topic, &entry.key).map_err(|e| self.serde_error(e))?;
            let new = self.decode_value(entry.new.as_deref())?;
            let old = self.decode_value(entry.old.as_deref())?;
            forward(&self.children, ctx, Record::new(key, Change { new, old }, entry.timestamp))?;
        }
        Ok(())
    }
}

impl<KS, AS, VIn, F> Node<KS::Target, VIn> for AggregateNode<KS, AS, VIn, F>
where
    KS: Serde,
    AS: Serde,
    KS::Target: Clone + 'static,
    AS::Target: Clone + 'static,
    F: Fn(&KS::Target, VIn, Option<AS::Target>) -> Option<AS::Target>,
{
    fn process(&mut self, ctx: &mut TaskContext, record: Record<KS::Target, VIn>) -> Result<()> {
        self.key_buf.clear();
        let topic = &*self.store.changelog;
        match self.keys.serialize_nullable(topic, &record.key, &mut self.key_buf) {
            Ok(true) => {}
            Ok(false) => {
                // Kafka drops records with a null key from aggregations: they belong to no group.
                ctx.metrics.skipped += 1;
                tracing::warn!(task = %ctx.task, operator = %self.name, "skipping a record with a null key");
                return Ok(());
            }
            Err(e) => return Err(self.serde_error(e)),
        }
        // One lock for the read and the write of this key.
        let mut guard = self.store.store.lock();
        let current = guard.get(&self.key_buf, |v| self.decode_value(v))??;
        let old = if self.cached { None } else { current.clone() };
        let new = (self.update)(&record.key, record.value, current);
        self.value_buf.clear();
        let present = match &new {
            Some(v) => {
                self.values.serialize_nullable(topic, v, &mut self.value_buf).map_err(|e| self.serde_error(e))?
            }
            None => false,
        };
        let full = guard.put(&self.key_buf, present.then_some(self.value_buf.as_slice()), record.timestamp)?;
        let flushed = if full { guard.flush_cache(true)? } else { Vec::new() };
        drop(guard);
        if !self.cached {
            if new.is_none() && old.is_none() {
                return Ok(());
            }
            let out = Record {
                key: record.key,
                value: Change { new, old },
                timestamp: record.timestamp,
                headers: record.headers,
            };
            return forward(&self.children, ctx, out);
        }
        self.forward_flushed(ctx, flushed)
    }

    fn prefetch_keys(&self, keys: &[&[u8]]) {
        if self.cached {
            let store = self.store.store.lock();
            for key in keys {
                store.prefetch(key);
            }
        }
    }
}

impl<KS, AS, VIn, F> Flush for AggregateNode<KS, AS, VIn, F>
where
    KS: Serde,
    AS: Serde,
    KS::Target: Clone + 'static,
    AS::Target: Clone + 'static,
{
    fn flush(&mut self, ctx: &mut TaskContext) -> Result<()> {
        let flushed = self.store.store.lock().flush_cache(true)?;
        self.forward_flushed(ctx, flushed)
    }
}

pub(crate) struct TableFilterNode<K, V, F> {
    pub pred: Arc<F>,
    pub keep_when: bool,
    pub children: Vec<Child<K, Change<V>>>,
}

impl<K: Clone, V: Clone, F: Fn(&K, &V) -> bool> Node<K, Change<V>> for TableFilterNode<K, V, F> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, Change<V>>) -> Result<()> {
        let Record { key, value, timestamp, headers } = record;
        let keep = |v: Option<V>| v.filter(|v| (self.pred)(&key, v) == self.keep_when);
        let change = Change { new: keep(value.new), old: keep(value.old) };
        // A key that was not in the filtered table and still is not: nothing changed.
        if change.new.is_none() && change.old.is_none() {
            return Ok(());
        }
        forward(&self.children, ctx, Record { key, value: change, timestamp, headers })
    }
}

pub(crate) struct TableMapValuesNode<K, V, V2, F> {
    pub f: Arc<F>,
    pub children: Vec<Child<K, Change<V2>>>,
    pub _types: PhantomData<fn(V)>,
}

impl<K: Clone, V, V2: Clone, F: Fn(&K, V) -> V2> Node<K, Change<V>> for TableMapValuesNode<K, V, V2, F> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, Change<V>>) -> Result<()> {
        let Record { key, value, timestamp, headers } = record;
        let change = Change { new: value.new.map(|v| (self.f)(&key, v)), old: value.old.map(|v| (self.f)(&key, v)) };
        forward(&self.children, ctx, Record { key, value: change, timestamp, headers })
    }
}

/// `KTable::to_stream`: each change becomes a record of its new value (`None`: deleted).
pub(crate) struct ToStreamNode<K, V> {
    pub children: Vec<Child<K, Option<V>>>,
}

impl<K: Clone, V: Clone> Node<K, Change<V>> for ToStreamNode<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, Change<V>>) -> Result<()> {
        let new = record.value.new;
        forward(
            &self.children,
            ctx,
            Record { key: record.key, value: new, timestamp: record.timestamp, headers: record.headers },
        )
    }
}

/// `KTable::group_by`: maps each change to the new key and value, and sends the old one's
/// retraction before the new one's addition.
pub(crate) struct TableGroupByNode<K, V, K2, V2, F> {
    pub f: Arc<F>,
    pub children: Vec<Child<K2, GroupedChange<V2>>>,
    pub _types: PhantomData<fn(K, V)>,
}

impl<K: Clone, V, K2: Clone, V2: Clone, F: Fn(K, V) -> (K2, V2)> Node<K, Change<V>>
    for TableGroupByNode<K, V, K2, V2, F>
{
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, Change<V>>) -> Result<()> {
        let Change { new, old } = record.value;
        if let Some(old) = old {
            let (key, value) = (self.f)(record.key.clone(), old);
            let out = Record {
                key,
                value: GroupedChange::Subtract(value),
                timestamp: record.timestamp,
                headers: record.headers.clone(),
            };
            forward(&self.children, ctx, out)?;
        }
        if let Some(new) = new {
            let (key, value) = (self.f)(record.key, new);
            let out =
                Record { key, value: GroupedChange::Add(value), timestamp: record.timestamp, headers: record.headers };
            forward(&self.children, ctx, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::Serdes;

    #[test]
    fn grouped_changes_round_trip_and_garbage_is_an_error() {
        let serde = GroupedChangeSerde(Serdes::i64());
        for change in [GroupedChange::Add(5), GroupedChange::Subtract(-3)] {
            let mut out = Vec::new();
            serde.serialize("t", &change, &mut out).unwrap();
            assert_eq!(serde.deserialize("t", &out).unwrap(), change);
        }
        assert!(serde.deserialize("t", &[]).is_err());
        assert!(serde.deserialize("t", &[9, 0]).unwrap_err().reason.contains("unknown change tag 9"));
    }
}
