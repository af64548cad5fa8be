//! What a client knows about the cluster: brokers, topics and partition leaders, and one
//! connection per broker, opened on first use and reopened after it fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;

use super::config::ClientConfig;
use super::connection::Connection;
use super::error::{ClientError, Result};
use crate::codes;

/// One partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// The leader's node id, or -1 when there is none.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Replicas whose broker is down (fenced or gone), from Metadata v5.
    pub offline_replicas: Vec<i32>,
    /// The partition's error code (0 when it is fine).
    pub error_code: i16,
}

/// One topic as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// The topic id.
    pub topic_id: uuid::Uuid,
    /// Whether it is an internal topic.
    pub is_internal: bool,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionInfo>,
}

/// One broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Its node id.
    pub node_id: i32,
    /// `host:port`.
    pub addr: String,
    /// Its rack, if it has one.
    pub rack: Option<String>,
}

#[derive(Default)]
struct State {
    brokers: HashMap<i32, BrokerInfo>,
    /// Looked up by every `send`, so hashed with foldhash rather than SipHash.
    topics: HashMap<String, Arc<TopicInfo>, foldhash::fast::RandomState>,
    controller: Option<i32>,
    cluster_id: Option<String>,
    refreshed: Option<Instant>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

/// Brokers, topics and connections, shared by everything a client runs.
pub(crate) struct Cluster {
    pub(crate) config: ClientConfig,
    state: Mutex<State>,
    /// One slot per address, so that opening one connection does not hold up others.
    connections: Mutex<HashMap<String, Slot>>,
}

impl Cluster {
    pub(crate) fn new(config: ClientConfig) -> Result<Self> {
        if config.bootstrap_servers.is_empty() {
            return Err(ClientError::config("bootstrap.servers", "", "no servers given"));
        }
        Ok(Self { config, state: Mutex::default(), connections: Mutex::default() })
    }

    /// The connection to `addr`, opened if there is none or the last one failed.
    pub(crate) async fn connect(&self, addr: &str) -> Result<Arc<Connection>> {
        let slot = self.connections.lock().entry(addr.to_string()).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        let connection = Arc::new(Connection::connect(addr, self.config.connection()).await?);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// The connection to broker `node_id`.
    pub(crate) async fn broker(&self, node_id: i32) -> Result<Arc<Connection>> {
        let addr = self.state.lock().brokers.get(&node_id).map(|b| b.addr.clone());
        match addr {
            Some(addr) => self.connect(&addr).await,
            None => Err(ClientError::Broker {
                code: codes::LEADER_NOT_AVAILABLE,
                context: format!("broker {node_id}"),
                message: Some("not in the cluster metadata".into()),
            }),
        }
    }

    /// A connection to any broker: an open one if there is one, else the known brokers
    /// and then the bootstrap servers, in turn.
    pub(crate) async fn any(&self) -> Result<Arc<Connection>> {
        let open = self
            .connections
            .lock()
            .values()
            .filter_map(|slot| slot.try_lock().ok().and_then(|c| c.clone()))
            .find(|c| !c.is_closed());
        if let Some(connection) = open {
            return Ok(connection);
        }
        let mut candidates: Vec<String> = self.state.lock().brokers.values().map(|b| b.addr.clone()).collect();
        candidates.sort();
        candidates.extend(self.config.bootstrap_servers.iter().cloned());
        candidates.dedup();
        let mut failures = Vec::new();
        for addr in &candidates {
            match self.connect(addr).await {
                Ok(connection) => return Ok(connection),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(ClientError::Disconnected {
            addr: candidates.join(","),
            reason: format!("no broker reachable: {}", failures.join("; ")),
        })
    }

    /// The controller's node id, when the metadata named one.
    pub(crate) fn controller(&self) -> Option<i32> {
        self.state.lock().controller
    }

    /// The cluster id, when known.
    pub(crate) fn cluster_id(&self) -> Option<String> {
        self.state.lock().cluster_id.clone()
    }

    /// The known brokers, by node id.
    pub(crate) fn brokers(&self) -> Vec<BrokerInfo> {
        let mut brokers: Vec<_> = self.state.lock().brokers.values().cloned().collect();
        brokers.sort_by_key(|b| b.node_id);
        brokers
    }

    /// A topic from the cache, without asking the cluster.
    pub(crate) fn cached_topic(&self, topic: &str) -> Option<Arc<TopicInfo>> {
        self.state.lock().topics.get(topic).cloned()
    }

    /// Whether the cache is older than `metadata.max.age.ms`.
    pub(crate) fn is_stale(&self) -> bool {
        self.state.lock().refreshed.is_none_or(|at| at.elapsed() >= self.config.metadata_max_age)
    }

    /// The topics the cache knows about.
    pub(crate) fn cached_topic_names(&self) -> Vec<String> {
        self.state.lock().topics.keys().cloned().collect()
    }

    /// A topic's metadata, from the cache or else from the cluster. An unknown topic is
    /// a typed UNKNOWN_TOPIC_OR_PARTITION error.
    pub(crate) async fn topic(&self, topic: &str) -> Result<Arc<TopicInfo>> {
        if let Some(info) = self.cached_topic(topic) {
            return Ok(info);
        }
        self.refresh(Some(&[topic.to_string()])).await?;
        self.cached_topic(topic).ok_or_else(|| ClientError::Broker {
            code: codes::UNKNOWN_TOPIC_OR_PARTITION,
            context: format!("metadata for topic '{topic}'"),
            message: None,
        })
    }

    /// Asks the cluster for metadata about `topics` (all topics with `None`) and updates
    /// the cache. Topic errors are returned per topic; a topic that does not exist is
    /// removed from the cache.
    pub(crate) async fn refresh(&self, topics: Option<&[String]>) -> Result<Vec<(String, i16)>> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(self.config.allow_auto_create_topics);
        let connection = self.any().await?;
        let response = connection.send(&request).await?;
        Ok(self.absorb(response, topics.is_none()))
    }

    fn absorb(&self, response: MetadataResponse, all_topics: bool) -> Vec<(String, i16)> {
        let mut state = self.state.lock();
        state.brokers = response
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    node_id: b.node_id.0,
                    addr: format!("{}:{}", b.host.as_str(), b.port),
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (b.node_id.0, info)
            })
            .collect();
        state.controller = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
        state.cluster_id = response.cluster_id.as_ref().map(|c| c.to_string());
        state.refreshed = Some(Instant::now());
        if all_topics {
            state.topics.clear();
        }
        let mut errors = Vec::new();
        for topic in response.topics {
            let Some(name) = topic.name.map(|n| n.0.to_string()) else { continue };
            if topic.error_code != codes::NONE {
                errors.push((name.clone(), topic.error_code));
                // A topic that is merely leaderless keeps its last known layout.
                if topic.error_code == codes::UNKNOWN_TOPIC_OR_PARTITION
                    || topic.error_code == codes::INVALID_TOPIC_EXCEPTION
                {
                    state.topics.remove(&name);
                }
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|n| n.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info =
                TopicInfo { name: name.clone(), topic_id: topic.topic_id, is_internal: topic.is_internal, partitions };
            state.topics.insert(name, Arc::new(info));
        }
        errors
    }
}
