//! The topology: a graph of operators, built by the DSL ([`crate::StreamsBuilder`]) and
//! instantiated once per task.
//!
//! The graph is type-erased: each node keeps a build function that knows its types and
//! makes the runtime operator, asking the [`Instantiator`] for its children (typed) and its
//! stores. [`Topology::describe`] prints it the way Kafka's `TopologyDescription` does.
//!
//! The graph is cut into sub-topologies ([`Subtopology`]): the connected parts once the
//! edges through repartition topics are removed, with operators that share a store kept
//! together. A task is one partition of one sub-topology.

mod instantiate;
mod subtopologies;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use regex::Regex;

pub(crate) use instantiate::{Built, Instantiator};
pub(crate) use subtopologies::Subtopology;

use crate::error::Result;
use crate::state::StoreSpec;

pub(crate) type NodeId = usize;

/// Makes a node's runtime operator for a task.
pub(crate) type BuildFn = Arc<dyn Fn(&mut Instantiator<'_>, NodeId) -> Result<Built> + Send + Sync>;

/// A topic a source reads or a sink writes. Internal topics get the `application.id`
/// prefix when the application runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TopicRef {
    /// A user topic, as named.
    External(String),
    /// `<application.id>-<name>`: a repartition topic.
    Internal(String),
}

impl TopicRef {
    pub fn resolve(&self, application_id: &str) -> String {
        match self {
            TopicRef::External(t) => t.clone(),
            TopicRef::Internal(name) => format!("{application_id}-{name}"),
        }
    }
}

impl fmt::Display for TopicRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicRef::External(t) => f.write_str(t),
            TopicRef::Internal(name) => write!(f, "<application.id>-{name}"),
        }
    }
}

#[derive(Clone)]
pub(crate) enum NodeKind {
    Source {
        topics: Vec<TopicRef>,
        pattern: Option<Regex>,
    },
    Processor,
    Sink {
        /// `None`: chosen per record.
        topic: Option<TopicRef>,
    },
}

#[derive(Clone)]
pub(crate) struct NodeSpec {
    pub name: String,
    pub kind: NodeKind,
    pub parents: Vec<NodeId>,
    pub children: Vec<NodeId>,
    /// Stores the operator reads or writes.
    pub stores: Vec<String>,
    pub build: BuildFn,
}

impl fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSpec").field("name", &self.name).field("children", &self.children).finish()
    }
}

/// A repartition topic the application creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepartitionTopic {
    /// The partition count asked for; `None`: as many as the upstream source topics have.
    pub partitions: Option<i32>,
}

/// A global store: every instance reads all partitions of its topic into its own copy.
#[derive(Debug, Clone)]
pub(crate) struct GlobalStore {
    pub store: String,
    pub topic: String,
    /// The node that writes the store.
    pub node: NodeId,
}

/// A processing topology: what [`crate::StreamsBuilder::build`] returns and what an
/// application runs.
#[derive(Clone)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) stores: BTreeMap<String, StoreSpec>,
    pub(crate) repartition_topics: BTreeMap<String, RepartitionTopic>,
    pub(crate) globals: Vec<GlobalStore>,
    pub(crate) subtopologies: Vec<Subtopology>,
    /// The parts that keep global stores up to date, one per global store.
    pub(crate) global_parts: Vec<Subtopology>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Topology {
    pub(crate) fn new(
        nodes: Vec<NodeSpec>,
        stores: BTreeMap<String, StoreSpec>,
        repartition_topics: BTreeMap<String, RepartitionTopic>,
        globals: Vec<GlobalStore>,
    ) -> Result<Self> {
        let (subtopologies, global_parts) = subtopologies::cut(&nodes, &stores, &globals)?;
        Ok(Topology { nodes, stores, repartition_topics, globals, subtopologies, global_parts })
    }

    /// The topology as text, in the shape of Kafka's `TopologyDescription`:
    ///
    /// ```text
    /// Sub-topology: 0
    ///   Source: KSTREAM-SOURCE-0000000000 (topics: [lines])
    ///     --> KSTREAM-FLATMAPVALUES-0000000001
    /// ```
    pub fn describe(&self) -> String {
        let mut out = String::from("Topologies:\n");
        for sub in &self.subtopologies {
            out.push_str(&format!("   Sub-topology: {}\n", sub.id));
            for &id in &sub.nodes {
                self.describe_node(&mut out, id);
            }
        }
        for global in &self.globals {
            out.push_str(&format!("   Global store: {} (topic: {})\n", global.store, global.topic));
        }
        out
    }

    fn describe_node(&self, out: &mut String, id: NodeId) {
        let node = &self.nodes[id];
        let names = |ids: &[NodeId]| {
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.iter().map(|&i| self.nodes[i].name.as_str()).collect::<Vec<_>>().join(", ")
            }
        };
        match &node.kind {
            NodeKind::Source { topics, pattern, .. } => {
                let what = match pattern {
                    Some(p) => format!("topics: /{p}/"),
                    None => {
                        format!("topics: [{}]", topics.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
                    }
                };
                out.push_str(&format!("    Source: {} ({what})\n", node.name));
            }
            NodeKind::Processor => {
                out.push_str(&format!("    Processor: {} (stores: [{}])\n", node.name, node.stores.join(", ")));
            }
            NodeKind::Sink { topic } => {
                let what = topic.as_ref().map_or("chosen per record".to_string(), ToString::to_string);
                out.push_str(&format!("    Sink: {} (topic: {what})\n", node.name));
            }
        }
        out.push_str(&format!("      --> {}\n", names(&node.children)));
        out.push_str(&format!("      <-- {}\n", names(&node.parents)));
    }

    /// The sub-topology that `topic` (resolved) feeds, if any.
    pub(crate) fn subtopology_of_topic(&self, topic: &str, application_id: &str) -> Option<&Subtopology> {
        self.subtopologies.iter().find(|s| s.reads(topic, application_id, &self.nodes))
    }

    /// The topics, out of `known`, that `sub` reads (named ones and pattern matches).
    pub(crate) fn topics_read<'k>(
        &self,
        sub: &Subtopology,
        application_id: &str,
        known: impl IntoIterator<Item = &'k String>,
    ) -> Vec<String> {
        known.into_iter().filter(|t| sub.reads(t, application_id, &self.nodes)).cloned().collect()
    }

    /// Store names with a changelog, and their changelog topic names.
    pub(crate) fn changelogs(&self, application_id: &str) -> Vec<(String, String)> {
        self.stores
            .values()
            .filter(|s| s.logging && !self.globals.iter().any(|g| g.store == s.name))
            .map(|s| (s.name.clone(), changelog_topic(application_id, &s.name)))
            .collect()
    }
}

/// `<application.id>-<store>-changelog`.
pub(crate) fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}
