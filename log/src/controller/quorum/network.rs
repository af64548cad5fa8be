//! The quorum's transport: openraft's RPCs over TCP between the controllers' `CONTROLLER`
//! listeners, one request at a time per connection, each frame `[length u32][json]`.
//! Connections are made on first use and dropped on any error; openraft retries. Every
//! request names the sender's cluster id; a node of another cluster is answered with this
//! node's and refused, as KRaft answers INCONSISTENT_CLUSTER_ID.
//!
//! The same listener answers [`ControllerRequest`]s from brokers on other nodes (Kafka's
//! controller APIs share its controller listener too): [`ControllerClient`] sends them, and
//! the [`ControllerHandler`] this node registers answers them.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::{MetadataRaft, QuorumError};
use crate::controller::{ControllerRequest, ControllerResponse};

type NodeId = u64;

/// The largest frame either side accepts.
const MAX_FRAME_BYTES: usize = 64 << 20;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A request and the cluster id of the node that sends it.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    cluster_id: String,
    request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    AppendEntries(AppendEntriesRequest<MetadataRaft>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<MetadataRaft>),
    Controller(ControllerRequest),
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Controller(Result<ControllerResponse, RemoteQuorumError>),
    /// The sender belongs to another cluster: this node's id.
    WrongCluster(String),
}

/// A [`QuorumError`] as it crosses the wire.
#[derive(Debug, Serialize, Deserialize)]
enum RemoteQuorumError {
    NotController { leader: Option<u64> },
    Failed(String),
}

impl From<QuorumError> for RemoteQuorumError {
    fn from(e: QuorumError) -> Self {
        match e {
            QuorumError::NotController { leader } => Self::NotController { leader },
            other => Self::Failed(other.to_string()),
        }
    }
}

impl From<RemoteQuorumError> for QuorumError {
    fn from(e: RemoteQuorumError) -> Self {
        match e {
            RemoteQuorumError::NotController { leader } => Self::NotController { leader },
            RemoteQuorumError::Failed(message) => Self::Raft(message),
        }
    }
}

/// The future a [`ControllerHandler`] answers with.
pub type ControllerFuture<'a> = Pin<Box<dyn Future<Output = Result<ControllerResponse, QuorumError>> + Send + 'a>>;

/// Answers controller requests that arrive on the controller listener.
pub trait ControllerHandler: Send + Sync + std::fmt::Debug {
    /// Runs `request` if this node is the active controller; NOT_CONTROLLER otherwise.
    fn handle(&self, request: ControllerRequest) -> ControllerFuture<'_>;
}

/// Where the listener finds this node's controller, once it has one. Weak: the controller
/// owns the quorum, not the other way round.
#[derive(Debug, Clone, Default)]
pub(crate) struct ControllerSlot(Arc<parking_lot::RwLock<Option<Weak<dyn ControllerHandler>>>>);

impl ControllerSlot {
    pub(crate) fn set(&self, handler: Weak<dyn ControllerHandler>) {
        *self.0.write() = Some(handler);
    }

    async fn handle(&self, request: ControllerRequest) -> Result<ControllerResponse, RemoteQuorumError> {
        let handler = self.0.read().as_ref().and_then(Weak::upgrade);
        match handler {
            Some(handler) => handler.handle(request).await.map_err(Into::into),
            None => Err(RemoteQuorumError::NotController { leader: None }),
        }
    }
}

async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(body.len() + 4);
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    stream.write_all(&framed).await
}

async fn read_frame<T: serde::de::DeserializeOwned>(stream: &mut TcpStream) -> std::io::Result<T> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!("a {len}-byte quorum frame is larger than {MAX_FRAME_BYTES}")));
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

/// Serves the quorum RPCs of peers on `listener` until the task is dropped. The
/// connections are served by tasks this one owns, so aborting it closes every one of
/// them: a peer must not go on talking to a Raft instance that has shut down.
pub(crate) async fn serve(
    listener: TcpListener,
    raft: Raft<MetadataRaft>,
    controller: ControllerSlot,
    cluster_id: Arc<str>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "the quorum listener could not accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (raft, controller, cluster_id) = (raft.clone(), controller.clone(), cluster_id.clone());
        connections.spawn(async move {
            if let Err(e) = serve_connection(stream, raft, controller, &cluster_id).await
                && e.kind() != std::io::ErrorKind::UnexpectedEof
            {
                tracing::debug!(%peer, error = %e, "quorum connection closed");
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    raft: Raft<MetadataRaft>,
    controller: ControllerSlot,
    cluster_id: &str,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    loop {
        let envelope: Envelope = read_frame(&mut stream).await?;
        if envelope.cluster_id != cluster_id {
            tracing::error!(
                %peer,
                their_cluster = %envelope.cluster_id,
                this_cluster = cluster_id,
                "refused a quorum connection from a node of another cluster"
            );
            return write_frame(&mut stream, &Response::WrongCluster(cluster_id.to_owned())).await;
        }
        let response = match envelope.request {
            Request::AppendEntries(rpc) => Response::AppendEntries(raft.append_entries(rpc).await),
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
            Request::InstallSnapshot(rpc) => Response::InstallSnapshot(raft.install_snapshot(rpc).await),
            Request::Controller(request) => Response::Controller(controller.handle(request).await),
        };
        write_frame(&mut stream, &response).await?;
        if response.is_fatal() {
            return Ok(()); // this Raft has stopped; the peer reconnects to its successor
        }
    }
}

impl Response {
    fn is_fatal(&self) -> bool {
        match self {
            Self::AppendEntries(r) => matches!(r, Err(RaftError::Fatal(_))),
            Self::Vote(r) => matches!(r, Err(RaftError::Fatal(_))),
            Self::InstallSnapshot(r) => matches!(r, Err(RaftError::Fatal(_))),
            Self::Controller(_) | Self::WrongCluster(_) => false,
        }
    }
}

/// Makes a [`PeerConnection`] per voter.
#[derive(Debug, Clone)]
pub struct QuorumNetwork {
    source: Option<IpAddr>,
    cluster_id: Arc<str>,
    conflict: ClusterConflict,
}

/// The peers that refused this node as one of another cluster, with what they said and
/// when they last did.
pub(crate) type ClusterConflict =
    Arc<parking_lot::Mutex<std::collections::BTreeMap<NodeId, (String, std::time::Instant)>>>;

impl QuorumNetwork {
    /// Connections of a node of `cluster_id` leave from `source` (this node's listener IP),
    /// when given; a peer of another cluster is noted in `conflict`.
    pub(crate) fn new(source: Option<IpAddr>, cluster_id: Arc<str>, conflict: ClusterConflict) -> Self {
        Self { source: source.filter(|ip| !ip.is_unspecified()), cluster_id, conflict }
    }
}

impl RaftNetworkFactory<MetadataRaft> for QuorumNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerConnection {
            target,
            addr: node.addr.clone(),
            source: self.source,
            cluster_id: self.cluster_id.clone(),
            conflict: self.conflict.clone(),
            stream: None,
        }
    }
}

/// One peer, connected on demand.
#[derive(Debug)]
pub struct PeerConnection {
    target: NodeId,
    addr: String,
    source: Option<IpAddr>,
    cluster_id: Arc<str>,
    conflict: ClusterConflict,
    stream: Option<TcpStream>,
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerConnection {
    async fn call<E: std::error::Error>(
        &mut self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Response, RpcError<E>> {
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => self.connect().await?,
        };
        let envelope = Envelope { cluster_id: self.cluster_id.to_string(), request };
        let exchange = async {
            write_frame(&mut stream, &envelope).await?;
            read_frame::<Response>(&mut stream).await
        };
        match tokio::time::timeout(option.hard_ttl(), exchange).await {
            Ok(Ok(Response::WrongCluster(theirs))) => {
                let e = wrong_cluster(&format!("node {} at {}", self.target, self.addr), &theirs, &self.cluster_id);
                self.conflict.lock().insert(self.target, (e.to_string(), std::time::Instant::now()));
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Ok(Ok(response)) => {
                self.conflict.lock().remove(&self.target);
                self.stream = Some(stream);
                Ok(response)
            }
            Ok(Err(e)) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    async fn connect<E: std::error::Error>(&self) -> Result<TcpStream, RpcError<E>> {
        let addr: SocketAddr = self.addr.parse().map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        connect(addr, self.source).await.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    fn unexpected<E: std::error::Error>(&self, response: &Response) -> RpcError<E> {
        let e = std::io::Error::other(format!("node {} answered with {response:?}", self.target));
        RPCError::Network(NetworkError::new(&e))
    }
}

/// Connects to `addr`, leaving from `source` when given.
async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }?;
    if let Some(source) = source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connecting to {addr} timed out")))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends [`ControllerRequest`]s to a controller's listener, keeping idle connections for
/// reuse (Kafka's NodeToControllerChannelManager, without the choice of target: the caller
/// names the voter).
#[derive(Debug)]
pub struct ControllerClient {
    source: Option<IpAddr>,
    cluster_id: String,
    idle: parking_lot::Mutex<HashMap<SocketAddr, Vec<TcpStream>>>,
}

impl ControllerClient {
    /// A client of a node of `cluster_id`, whose connections leave from `source` when given.
    pub fn new(source: Option<IpAddr>, cluster_id: impl Into<String>) -> Self {
        Self {
            source: source.filter(|ip| !ip.is_unspecified()),
            cluster_id: cluster_id.into(),
            idle: Default::default(),
        }
    }

    /// Sends `request` to the controller listening on `addr` and waits, at most `timeout`,
    /// for its answer.
    pub async fn call(
        &self,
        addr: SocketAddr,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<ControllerResponse, QuorumError> {
        let pooled = self.idle.lock().get_mut(&addr).and_then(Vec::pop);
        let exchange = async {
            let mut stream = match pooled {
                Some(stream) => stream,
                None => connect(addr, self.source).await?,
            };
            let envelope = Envelope { cluster_id: self.cluster_id.clone(), request: Request::Controller(request) };
            write_frame(&mut stream, &envelope).await?;
            let response = read_frame::<Response>(&mut stream).await?;
            Ok::<_, std::io::Error>((stream, response))
        };
        let failed = |e: &dyn std::fmt::Display| QuorumError::Raft(format!("controller at {addr}: {e}"));
        let (stream, response) = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(failed(&e)),
            Err(_) => return Err(failed(&format!("no answer within {timeout:?}"))),
        };
        match response {
            Response::Controller(answer) => {
                self.idle.lock().entry(addr).or_default().push(stream);
                answer.map_err(Into::into)
            }
            Response::WrongCluster(theirs) => {
                Err(wrong_cluster(&format!("the controller at {addr}"), &theirs, &self.cluster_id))
            }
            other => Err(failed(&format!("unexpected answer {other:?}"))),
        }
    }
}

fn wrong_cluster(peer: &str, theirs: &str, ours: &str) -> QuorumError {
    QuorumError::InconsistentClusterId(format!(
        "{peer} belongs to cluster {theirs}, but this node's meta.properties says cluster {ours}: \
         format every node with the same id (freshet storage format --cluster-id), or point \
         log.dirs at this node's own directory"
    ))
}

fn remote<E: std::error::Error>(target: NodeId, e: RaftError<NodeId, E>) -> RpcError<E> {
    RPCError::RemoteError(openraft::error::RemoteError::new(target, e))
}

impl RaftNetwork<MetadataRaft> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetadataRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        match self.call(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(answer) => answer.map_err(|e| remote(self.target, e)),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetadataRaft>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        match self.call(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(answer) => answer.map_err(|e| remote(self.target, e)),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(answer) => answer.map_err(|e| remote(self.target, e)),
            other => Err(self.unexpected(&other)),
        }
    }
}
