//! Cutting the graph into sub-topologies: the connected parts of the operator graph, where
//! operators sharing a store count as connected and repartition topics do not (a sink writes
//! them, a source of another part reads them). Numbered in the order of their first
//! operator, as Kafka numbers them.

use std::collections::BTreeMap;

use regex::Regex;

use super::{GlobalStore, NodeId, NodeKind, NodeSpec, TopicRef};
use crate::error::{Result, StreamsError};
use crate::state::StoreSpec;

#[derive(Debug, Clone)]
pub(crate) struct Subtopology {
    pub id: u32,
    /// Its operators, ascending.
    pub nodes: Vec<NodeId>,
    /// Its source operators.
    pub sources: Vec<NodeId>,
    /// Topics its sources name.
    pub source_topics: Vec<TopicRef>,
    /// Patterns its sources subscribe to.
    pub patterns: Vec<Regex>,
    /// Stores its operators use.
    pub stores: Vec<String>,
}

impl Subtopology {
    /// The source operator reading `topic` (resolved), if this sub-topology reads it.
    pub fn source_for(&self, topic: &str, application_id: &str, nodes: &[NodeSpec]) -> Option<NodeId> {
        self.sources.iter().copied().find(|&id| match &nodes[id].kind {
            NodeKind::Source { topics, pattern, .. } => {
                topics.iter().any(|t| t.resolve(application_id) == topic)
                    || pattern.as_ref().is_some_and(|p| full_match(p, topic))
            }
            _ => false,
        })
    }

    pub fn reads(&self, topic: &str, application_id: &str, nodes: &[NodeSpec]) -> bool {
        self.source_for(topic, application_id, nodes).is_some()
    }
}

/// Whether `pattern` matches all of `topic`, as Java's `Pattern.matcher(t).matches()`.
pub(crate) fn full_match(pattern: &Regex, topic: &str) -> bool {
    pattern.find(topic).is_some_and(|m| m.start() == 0 && m.end() == topic.len())
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

/// The sub-topologies, and the parts that update global stores.
pub(crate) fn cut(
    nodes: &[NodeSpec],
    stores: &BTreeMap<String, StoreSpec>,
    globals: &[GlobalStore],
) -> Result<(Vec<Subtopology>, Vec<Subtopology>)> {
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    let mut store_users: BTreeMap<&str, NodeId> = BTreeMap::new();
    for (id, node) in nodes.iter().enumerate() {
        for &child in &node.children {
            union(&mut parent, id, child);
        }
        for store in &node.stores {
            if !stores.contains_key(store) {
                return Err(StreamsError::Topology(format!(
                    "operator {} uses store '{store}', which was never added (add_state_store)",
                    node.name
                )));
            }
            match store_users.get(store.as_str()) {
                Some(&other) => union(&mut parent, id, other),
                None => {
                    store_users.insert(store, id);
                }
            }
        }
    }
    let roots: Vec<usize> = (0..nodes.len()).map(|i| find(&mut parent, i)).collect();
    let global_roots: Vec<usize> = globals.iter().map(|g| roots[g.node]).collect();
    let global_nodes: Vec<NodeId> = (0..nodes.len()).filter(|&n| global_roots.contains(&roots[n])).collect();
    for g in globals {
        for (id, node) in nodes.iter().enumerate() {
            if node.stores.contains(&g.store) && !global_nodes.contains(&id) {
                return Err(StreamsError::Topology(format!(
                    "operator {} uses global store '{}'; global stores are read-only outside their own updater",
                    node.name, g.store
                )));
            }
        }
    }

    let mut parts: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
    let mut global_parts: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
    for (id, &root) in roots.iter().enumerate() {
        if global_nodes.contains(&id) {
            global_parts.entry(root).or_default().push(id);
        } else {
            parts.entry(root).or_default().push(id);
        }
    }
    let mut readers: BTreeMap<String, &str> = BTreeMap::new();
    let subs = describe_parts(nodes, parts, &mut readers)?;
    let globals = describe_parts(nodes, global_parts, &mut readers)?;
    Ok((subs, globals))
}

fn describe_parts<'a>(
    nodes: &'a [NodeSpec],
    parts: BTreeMap<usize, Vec<NodeId>>,
    readers: &mut BTreeMap<String, &'a str>,
) -> Result<Vec<Subtopology>> {
    let mut out = Vec::new();
    for (i, members) in parts.into_values().enumerate() {
        let mut sub = Subtopology {
            id: i as u32,
            nodes: members.clone(),
            sources: Vec::new(),
            source_topics: Vec::new(),
            patterns: Vec::new(),
            stores: Vec::new(),
        };
        for &id in &members {
            let node = &nodes[id];
            if let NodeKind::Source { topics, pattern, .. } = &node.kind {
                sub.sources.push(id);
                for topic in topics {
                    if let Some(other) = readers.insert(topic.to_string(), &node.name) {
                        return Err(StreamsError::Topology(format!(
                            "topic {topic} is read by two sources, {other} and {}; read it once and reuse the stream",
                            node.name
                        )));
                    }
                    sub.source_topics.push(topic.clone());
                }
                sub.patterns.extend(pattern.clone());
            }
            for store in &node.stores {
                if !sub.stores.contains(store) {
                    sub.stores.push(store.clone());
                }
            }
        }
        if sub.sources.is_empty() {
            continue;
        }
        out.push(sub);
    }
    for (i, sub) in out.iter_mut().enumerate() {
        sub.id = i as u32;
    }
    Ok(out)
}
