//! The controller quorum: the metadata log replicated by openraft among the voters of
//! `controller.quorum.voters` (KRaft's role, on an existing Raft engine rather than a
//! home-made one). Each Raft entry is a batch of [`MetadataRecord`]s; record offsets count
//! records across entries, so every voter's [`ClusterImage`] is the same at the same
//! offset. A single node runs a one-voter quorum with no listener.
//!
//! - [`MetadataLogStore`]: the Raft log and vote on disk.
//! - [`MetadataStateMachine`]: committed records applied to the image, with snapshots.
//! - [`network`]: the RPCs over TCP between controller listeners.

mod log_store;
pub mod network;
mod state_machine;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};

pub use log_store::MetadataLogStore;
pub use state_machine::MetadataStateMachine;
pub use status::{QuorumDescription, QuorumReplica};

use super::{ClusterImage, MetadataRecord};

/// How long a peer's refusal of this node's cluster id counts.
const CONFLICT_MEMORY: Duration = Duration::from_secs(10);

/// Records appended together, in one Raft entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    /// In log order.
    pub records: Vec<MetadataRecord>,
}

impl std::fmt::Display for MetadataBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} metadata records", self.records.len())
    }
}

openraft::declare_raft_types!(
    /// The quorum's Raft types: entries carry [`MetadataBatch`]es and answer the offset of
    /// their last record; nodes are `node.id`s.
    pub MetadataRaft:
        D = MetadataBatch,
        R = i64,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// Why the quorum could not start or append.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// The log, vote or snapshot could not be read or written.
    #[error("metadata log in {path}: {source}")]
    Storage {
        /// Its directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// This node does not lead the quorum; `leader` may.
    #[error("this node is not the active controller (leader: {leader:?})")]
    NotController {
        /// The leader, when known.
        leader: Option<u64>,
    },
    /// openraft refused or failed.
    #[error("controller quorum: {0}")]
    Raft(String),
    /// A peer belongs to another cluster.
    #[error("{0}")]
    InconsistentClusterId(String),
}

impl QuorumError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::NotController { .. } => crate::codes::NOT_CONTROLLER,
            Self::InconsistentClusterId(_) => crate::codes::INCONSISTENT_CLUSTER_ID,
            Self::Storage { .. } | Self::Raft(_) => crate::codes::UNKNOWN_SERVER_ERROR,
        }
    }
}

/// How a node takes part in the quorum.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id.
    pub node_id: u64,
    /// Every voter's id and controller address (`controller.quorum.voters`); this node's
    /// own entry is where it listens. Empty: a one-voter quorum of this node, in-process.
    pub voters: BTreeMap<u64, SocketAddr>,
    /// Where the log, vote and snapshot live (`<log.dirs>/__cluster_metadata-0`).
    pub dir: PathBuf,
    /// Heartbeat interval; elections time out between 3 and 6 of them.
    pub heartbeat_ms: u64,
    /// A snapshot every this many entries; older entries are purged behind it.
    pub snapshot_every_entries: u64,
    /// Where to listen, when not this node's voter address (behind a proxy or NAT).
    /// Connections to peers leave from this address's IP.
    pub listen: Option<SocketAddr>,
    /// The cluster this node belongs to (`meta.properties`); peers must name the same.
    pub cluster_id: String,
}

impl QuorumConfig {
    /// A one-voter quorum in `dir`.
    pub fn single_node(node_id: u64, dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id,
            voters: BTreeMap::new(),
            dir: dir.into(),
            heartbeat_ms: 100,
            snapshot_every_entries: 10_000,
            listen: None,
            cluster_id: String::new(),
        }
    }
}

/// A running member of the quorum.
pub struct MetadataQuorum {
    node_id: u64,
    voters: BTreeMap<u64, SocketAddr>,
    /// The IP this node's connections to peers and controllers leave from.
    source_ip: Option<std::net::IpAddr>,
    raft: Raft<MetadataRaft>,
    state_machine: MetadataStateMachine,
    cluster_id: Arc<str>,
    /// The peers that refused this node as one of another cluster.
    conflict: network::ClusterConflict,
    /// Answers the controller requests that arrive on this node's listener.
    controller: network::ControllerSlot,
    /// When each replica last held every entry this node had, while it leads.
    caught_up: status::CaughtUp,
    /// The listener and the caught-up tracker.
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for MetadataQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataQuorum").field("node_id", &self.node_id).field("leader", &self.leader()).finish()
    }
}

impl MetadataQuorum {
    /// Opens the log in `config.dir`, starts Raft, listens for peers (when there are any)
    /// and, on a new cluster, proposes the voter set as the first membership. Every voter
    /// may propose it: all propose the same one, and openraft keeps the first.
    pub async fn start(config: QuorumConfig) -> Result<Self, QuorumError> {
        let storage = |source| QuorumError::Storage { path: config.dir.clone(), source };
        let log_store = MetadataLogStore::open(&config.dir).map_err(storage)?;
        let state_machine = MetadataStateMachine::open(&config.dir).map_err(storage)?;
        let raft_config = openraft::Config {
            cluster_name: "freshet".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.heartbeat_ms * 3,
            election_timeout_max: config.heartbeat_ms * 6,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
            max_in_snapshot_log_to_keep: config.snapshot_every_entries / 2,
            ..openraft::Config::default()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(|e| QuorumError::Raft(e.to_string()))?);
        let listen = config.listen.or_else(|| config.voters.get(&config.node_id).copied());
        let cluster_id: Arc<str> = config.cluster_id.as_str().into();
        let conflict = network::ClusterConflict::default();
        let source_ip = listen.map(|a| a.ip()).filter(|ip| !ip.is_unspecified());
        let network = network::QuorumNetwork::new(source_ip, cluster_id.clone(), conflict.clone());
        let raft = Raft::new(config.node_id, raft_config, network, log_store, state_machine.clone())
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let controller = network::ControllerSlot::default();
        let caught_up = status::CaughtUp::default();
        let mut tasks = vec![tokio::spawn(status::track_caught_up(raft.metrics(), caught_up.clone()))];
        if let Some(addr) = listen.as_ref() {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(storage)?;
            tasks.push(tokio::spawn(network::serve(listener, raft.clone(), controller.clone(), cluster_id.clone())));
        }
        let quorum = Self {
            node_id: config.node_id,
            voters: config.voters.clone(),
            source_ip,
            raft,
            state_machine,
            cluster_id,
            conflict,
            controller,
            caught_up,
            tasks: parking_lot::Mutex::new(tasks),
        };
        quorum.initialize(&config).await?;
        if config.voters.is_empty() {
            // A quorum of one elects itself within an election timeout; until it has, every
            // append would be refused.
            let timeout = Duration::from_millis(config.heartbeat_ms * 60);
            if quorum.wait_for_leader(timeout).await != Some(config.node_id) {
                return Err(QuorumError::Raft(format!("node {} did not elect itself", config.node_id)));
            }
            // Leading is not enough: the image must hold every entry of the log it replays.
            quorum.confirm_leadership().await?;
        }
        Ok(quorum)
    }

    async fn initialize(&self, config: &QuorumConfig) -> Result<(), QuorumError> {
        if !config.voters.is_empty() && !config.voters.contains_key(&config.node_id) {
            // An observer: the active controller adds it as a learner (see add_observer).
            return Ok(());
        }
        if self.raft.is_initialized().await.map_err(|e| QuorumError::Raft(e.to_string()))? {
            return Ok(());
        }
        let members: BTreeMap<u64, BasicNode> = if config.voters.is_empty() {
            BTreeMap::from([(config.node_id, BasicNode::default())])
        } else {
            config.voters.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect()
        };
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// Appends records and waits until they commit; returns the offset of the last one.
    pub async fn append(&self, records: Vec<MetadataRecord>) -> Result<i64, QuorumError> {
        match self.raft.client_write(MetadataBatch { records }).await {
            Ok(written) => Ok(written.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(QuorumError::NotController { leader: f.leader_id })
            }
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// Confirms leadership with a quorum and waits until every committed entry is applied,
    /// so the image is complete; returns the term it leads in.
    pub async fn confirm_leadership(&self) -> Result<u64, QuorumError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(self.raft.metrics().borrow().current_term),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(QuorumError::NotController { leader: f.leader_id })
            }
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// The term this node believes current.
    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// A copy of the committed image.
    pub fn image(&self) -> ClusterImage {
        self.state_machine.image()
    }

    /// The offset of the last record in the committed image.
    pub fn image_offset(&self) -> i64 {
        self.state_machine.with_image(|image| image.offset)
    }

    /// Runs `f` on the committed image without copying it.
    pub fn with_image<T>(&self, f: impl FnOnce(&ClusterImage) -> T) -> T {
        self.state_machine.with_image(f)
    }

    /// Watches the offset of the last committed record.
    pub fn committed_offset(&self) -> tokio::sync::watch::Receiver<i64> {
        self.state_machine.committed_offset()
    }

    /// The leader, when known.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this node is the active controller.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The cluster this node belongs to.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Why this node cannot take part in the quorum: a majority of the voters refused it
    /// as a node of another cluster. One refusing peer is that peer's mistake, not this
    /// node's, and only logged.
    /// Refusals older than [`CONFLICT_MEMORY`] are forgotten: peers keep sending RPCs, so
    /// a lasting conflict is always fresh, and a mended one fades.
    pub fn cluster_conflict(&self) -> Option<String> {
        let mut refused = self.conflict.lock();
        refused.retain(|_, (_, at)| at.elapsed() < CONFLICT_MEMORY);
        let majority = self.voters.len() / 2 + 1;
        if self.voters.is_empty() || refused.len() < majority {
            return None;
        }
        refused.values().next().map(|(why, _)| why.clone())
    }

    /// The voters' ids as the committed membership has them.
    pub fn voters(&self) -> BTreeSet<u64> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// The voters' controller addresses, as configured (empty on a single node).
    pub fn voter_addresses(&self) -> &BTreeMap<u64, SocketAddr> {
        &self.voters
    }

    /// The IP this node's quorum and controller connections leave from: its controller
    /// listener's, so that a firewall (or a test's proxy) can tell the nodes apart.
    pub fn source_ip(&self) -> Option<std::net::IpAddr> {
        self.source_ip
    }

    /// The quorum's state, for DescribeQuorum; NOT_CONTROLLER unless this node leads.
    pub fn describe(&self) -> Result<QuorumDescription, QuorumError> {
        status::describe(&self.raft.metrics().borrow(), &self.caught_up.lock())
    }

    /// Serves the controller requests that peers send to this node with `handler`.
    pub fn serve_controller(&self, handler: std::sync::Weak<dyn network::ControllerHandler>) {
        self.controller.set(handler);
    }

    /// Makes `node_id`, reachable on `addr`, an observer: an openraft learner, which this
    /// node (the leader) replicates the metadata log to without counting it in the quorum.
    /// Returns once the change has committed; a no-op when it is one with that address.
    pub async fn add_observer(&self, node_id: u64, addr: String) -> Result<(), QuorumError> {
        let known = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            if membership.voter_ids().any(|v| v == node_id) {
                return Err(QuorumError::Raft(format!("node {node_id} is a voter, not an observer")));
            }
            membership.get_node(&node_id).map(|n| n.addr == addr)
        };
        let node = BasicNode::new(addr);
        let added = match known {
            Some(true) => return Ok(()),
            // A learner that moved: adding would keep its old address.
            Some(false) => {
                let moved = openraft::ChangeMembers::SetNodes(BTreeMap::from([(node_id, node)]));
                self.raft.change_membership(moved, true).await.map(drop)
            }
            None => self.raft.add_learner(node_id, node, false).await.map(drop),
        };
        match added {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(QuorumError::NotController { leader: f.leader_id })
            }
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// Whether this node votes (it is an observer otherwise).
    pub fn is_voter(&self) -> bool {
        self.voters.is_empty() || self.voters.contains_key(&self.node_id)
    }

    /// Stands for election at once (to move the active controller here, as an operator or
    /// a test may want); the voters elect it if its log is as complete as theirs.
    pub async fn trigger_election(&self) -> Result<(), QuorumError> {
        self.raft.trigger().elect().await.map_err(|e| QuorumError::Raft(e.to_string()))
    }

    /// Waits until some node leads, for at most `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<u64> {
        let wait = self.raft.wait(Some(timeout));
        let metrics = wait.metrics(|m| m.current_leader.is_some(), "a leader").await;
        metrics.ok().and_then(|m| m.current_leader)
    }

    fn stop_tasks(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }

    /// Stops Raft, the listener and the tracker.
    pub async fn shutdown(&self) {
        self.stop_tasks();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "the controller quorum did not stop cleanly");
        }
    }
}

impl Drop for MetadataQuorum {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}
