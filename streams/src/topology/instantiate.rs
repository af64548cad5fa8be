//! Making a task's operators from the topology: each node's build function runs once,
//! children first, and the result is wired into its parents. Stores are opened on first
//! use.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::{NodeId, TopicRef, Topology, changelog_topic};
use crate::error::{Result, StreamsError};
use crate::processor::nodes::RawSource;
use crate::processor::{Child, Flush, Lifecycle};
use crate::state::{SharedStore, StoreSpec};
use crate::task::context::TaskStore;

/// What a node's build function returns.
pub(crate) enum Built {
    /// A source: takes records as read.
    Source(Box<dyn RawSource>),
    /// An operator: a `Child<K, V>` for its input types.
    Node(Box<dyn Any>),
}

/// Opens one task's instance of a store.
pub(crate) type StoreOpener<'a> = &'a mut dyn FnMut(&StoreSpec, &str) -> Result<SharedStore>;

pub(crate) struct Instantiator<'t> {
    pub topology: &'t Topology,
    pub application_id: Arc<str>,
    memo: HashMap<NodeId, Box<dyn Any>>,
    pub lifecycles: Vec<Rc<RefCell<dyn Lifecycle>>>,
    pub flushers: Vec<Rc<RefCell<dyn Flush>>>,
    pub stores: HashMap<String, TaskStore>,
    open_store: StoreOpener<'t>,
}

impl<'t> Instantiator<'t> {
    pub fn new(topology: &'t Topology, application_id: Arc<str>, open_store: StoreOpener<'t>) -> Self {
        Instantiator {
            topology,
            application_id,
            memo: HashMap::new(),
            lifecycles: Vec::new(),
            flushers: Vec::new(),
            stores: HashMap::new(),
            open_store,
        }
    }

    pub fn node_name(&self, id: NodeId) -> &'t str {
        &self.topology.nodes[id].name
    }

    /// The runtime operator of node `id`, which takes `K`, `V` records; built once.
    pub fn child<K: 'static, V: 'static>(&mut self, id: NodeId) -> Result<Child<K, V>> {
        if let Some(built) = self.memo.get(&id) {
            return downcast::<K, V>(built.as_ref(), self.node_name(id));
        }
        let build = self.topology.nodes[id].build.clone();
        match build(self, id)? {
            Built::Node(any) => {
                let child = downcast::<K, V>(any.as_ref(), self.node_name(id))?;
                self.memo.insert(id, any);
                Ok(child)
            }
            Built::Source(_) => Err(StreamsError::Topology(format!(
                "source {} cannot be downstream of another operator",
                self.node_name(id)
            ))),
        }
    }

    /// The runtime operators of node `id`'s children.
    pub fn children<K: 'static, V: 'static>(&mut self, id: NodeId) -> Result<Vec<Child<K, V>>> {
        let children = self.topology.nodes[id].children.clone();
        children.into_iter().map(|c| self.child::<K, V>(c)).collect()
    }

    /// This task's instance of store `name`, opened on first use.
    pub fn store(&mut self, name: &str) -> Result<TaskStore> {
        if let Some(store) = self.stores.get(name) {
            return Ok(store.clone());
        }
        let spec = self
            .topology
            .stores
            .get(name)
            .ok_or_else(|| StreamsError::Topology(format!("store '{name}' was never added to the topology")))?;
        let changelog = changelog_topic(&self.application_id, name);
        let store = (self.open_store)(spec, &changelog)?;
        let log_queued = store.lock().log_queued();
        let entry = TaskStore { spec: spec.clone(), store, changelog: changelog.into(), log_queued };
        self.stores.insert(name.to_string(), entry.clone());
        Ok(entry)
    }

    pub fn topic(&self, topic: &TopicRef) -> String {
        topic.resolve(&self.application_id)
    }

    /// Registers an operator with a lifecycle; returns its index (for punctuations).
    pub fn add_lifecycle(&mut self, node: Rc<RefCell<dyn Lifecycle>>) -> usize {
        self.lifecycles.push(node);
        self.lifecycles.len() - 1
    }

    pub fn add_flush(&mut self, node: Rc<RefCell<dyn Flush>>) {
        self.flushers.push(node);
    }
}

fn downcast<K: 'static, V: 'static>(any: &dyn Any, name: &str) -> Result<Child<K, V>> {
    any.downcast_ref::<Child<K, V>>().cloned().ok_or_else(|| {
        StreamsError::Topology(format!(
            "operator {name} does not take <{}, {}> records",
            std::any::type_name::<K>(),
            std::any::type_name::<V>()
        ))
    })
}
