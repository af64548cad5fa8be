//! One connection to one broker.
//!
//! A writer task sends frames in the order requests are made; a reader task matches each
//! answer to the oldest unanswered request (Kafka answers a connection's requests in
//! order) and checks its correlation id. Many requests may be in flight at once; callers
//! await their own answer. When the connection fails, every waiting request gets the
//! error, and later requests fail at once: the owner reconnects.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::error::{ClientError, Result};
use crate::codes;

/// The API versions this client speaks: (API, oldest, newest). A request uses the newest
/// version both sides speak.
pub const CLIENT_API_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The largest answer accepted from a broker; anything larger is taken as garbage.
const MAX_RESPONSE_BYTES: usize = 1 << 30;
/// Requests queued for the writer before callers wait.
const QUEUE_DEPTH: usize = 1024;

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id`, sent in every request header.
    pub client_id: String,
    /// How long connecting (and negotiating versions) may take.
    pub connect_timeout: Duration,
    /// `request.timeout.ms`: how long an answer may take.
    pub request_timeout: Duration,
    /// The address to leave from (a broker's inter-broker listener); `None`: the
    /// system's choice.
    pub local_address: Option<std::net::IpAddr>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "freshet".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            local_address: None,
        }
    }
}

/// A request waiting for its answer.
struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<Result<Bytes>>,
}

/// A frame for the writer, and whether an answer is expected.
struct Outgoing {
    frame: Bytes,
    pending: Option<Pending>,
}

#[derive(Default)]
struct Shared {
    /// Requests sent and not yet answered, oldest first.
    pending: Mutex<VecDeque<Pending>>,
    /// Why the connection closed, once it has.
    closed: Mutex<Option<String>>,
}

impl Shared {
    /// Marks the connection closed and fails everything waiting.
    fn close(&self, addr: &str, reason: String) {
        let mut closed = self.closed.lock();
        if closed.is_none() {
            tracing::debug!(%addr, %reason, "connection closed");
            *closed = Some(reason.clone());
        }
        for p in self.pending.lock().drain(..) {
            let _ = p.reply.send(Err(ClientError::Disconnected { addr: addr.to_string(), reason: reason.clone() }));
        }
    }
}

/// A connection to one broker, with negotiated API versions.
pub struct Connection {
    addr: String,
    config: ConnectionConfig,
    client_id: StrBytes,
    outgoing: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
    correlation: AtomicI32,
    /// The broker's version range per API key.
    broker_versions: HashMap<i16, (i16, i16)>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("addr", &self.addr).field("closed", &*self.shared.closed.lock()).finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A TCP connection to `addr` (`host:port`), leaving from `local` when given.
async fn open_stream(addr: &str, local: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(local) = local.filter(|ip| !ip.is_unspecified()) else { return TcpStream::connect(addr).await };
    let mut last = None;
    for target in tokio::net::lookup_host(addr).await?.filter(|t| t.is_ipv4() == local.is_ipv4()) {
        let socket = if target.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }?;
        socket.bind(std::net::SocketAddr::new(local, 0))?;
        match socket.connect(target).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr} has no address of the family of {local}"))
    }))
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Self> {
        let timeout = config.connect_timeout;
        let what = format!("connecting to {addr}");
        let connected = tokio::time::timeout(timeout, open_stream(addr, config.local_address))
            .await
            .map_err(|_| ClientError::Timeout { what, after_ms: timeout.as_millis() as u64 })?
            .map_err(|source| ClientError::Io { addr: addr.to_string(), source: Arc::new(source) })?;
        let _ = connected.set_nodelay(true);
        let (read, write) = connected.into_split();
        let shared = Arc::new(Shared::default());
        let (outgoing, queue) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(write_loop(addr.to_string(), write, queue, shared.clone()));
        let reader = tokio::spawn(read_loop(addr.to_string(), read, shared.clone()));
        let mut connection = Self {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            config,
            outgoing,
            shared,
            correlation: AtomicI32::new(0),
            broker_versions: HashMap::new(),
            reader,
        };
        let negotiate = connection.negotiate();
        let what = format!("negotiating API versions with {addr}");
        connection.broker_versions = tokio::time::timeout(timeout, negotiate)
            .await
            .map_err(|_| ClientError::Timeout { what, after_ms: timeout.as_millis() as u64 })??;
        Ok(connection)
    }

    /// ApiVersions at v3, or at v0 if the broker is older (it then lists its versions
    /// with UNSUPPORTED_VERSION, KIP-511).
    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("freshet"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response: ApiVersionsResponse = self.send_version(&request, 3).await?;
        if response.error_code == codes::UNSUPPORTED_VERSION {
            response = self.send_version(&ApiVersionsRequest::default(), 0).await?;
        }
        if let Some(e) = ClientError::from_code(response.error_code, format!("ApiVersions to {}", self.addr), None) {
            return Err(e);
        }
        Ok(response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect())
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection has failed or closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.lock().is_some()
    }

    /// The version this connection uses for `key`: the newest both sides speak.
    pub fn version(&self, key: ApiKey) -> Result<i16> {
        let (client_min, client_max) =
            CLIENT_API_VERSIONS.iter().find(|(k, ..)| *k == key).map_or((0, -1), |(_, min, max)| (*min, *max));
        let broker = self.broker_versions.get(&(key as i16)).copied();
        match broker {
            Some((min, max)) if min.max(client_min) <= max.min(client_max) => Ok(max.min(client_max)),
            _ => Err(ClientError::UnsupportedVersion {
                addr: self.addr.clone(),
                api: format!("{key:?}"),
                client_min,
                client_max,
                broker: broker.map_or_else(|| "none".to_string(), |(min, max)| format!("v{min}-v{max}")),
            }),
        }
    }

    /// Sends a request at the negotiated version and waits for its answer.
    pub async fn send<R: Request>(&self, request: &R) -> Result<R::Response> {
        let version = self.version(ApiKey::try_from(R::KEY).map_err(|()| self.protocol("unknown API key"))?)?;
        self.send_version(request, version).await
    }

    /// Sends a request at `version` and waits for its answer.
    pub async fn send_version<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        self.begin_version(request, version).await?.wait().await
    }

    /// Queues a request at the negotiated version and returns the wait for its answer.
    /// Requests go out in the order `begin` is called, so a caller that must keep order
    /// (a producer's batches) awaits `begin` in order and the answers concurrently.
    pub async fn begin<R: Request>(&self, request: &R) -> Result<PendingReply<R::Response>> {
        let version = self.version(ApiKey::try_from(R::KEY).map_err(|()| self.protocol("unknown API key"))?)?;
        self.begin_version(request, version).await
    }

    /// Like [`Connection::begin`], at `version`.
    pub async fn begin_version<R: Request>(&self, request: &R, version: i16) -> Result<PendingReply<R::Response>> {
        let (frame, correlation_id) = self.encode(request, version)?;
        let (reply, answer) = oneshot::channel();
        self.enqueue(Outgoing { frame, pending: Some(Pending { correlation_id, reply }) }).await?;
        Ok(PendingReply {
            answer,
            version,
            api_key: R::KEY,
            addr: self.addr.clone(),
            timeout: self.config.request_timeout,
            response: std::marker::PhantomData,
        })
    }

    /// Sends a request that gets no answer (a Produce with `acks=0`).
    pub async fn send_without_response<R: Request>(&self, request: &R) -> Result<()> {
        let version = self.version(ApiKey::try_from(R::KEY).map_err(|()| self.protocol("unknown API key"))?)?;
        let (frame, _) = self.encode(request, version)?;
        self.enqueue(Outgoing { frame, pending: None }).await
    }

    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<(Bytes, i32)> {
        let correlation_id = self.correlation.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut out = BytesMut::with_capacity(128);
        out.extend_from_slice(&[0; 4]);
        header.encode(&mut out, R::header_version(version)).map_err(|e| self.protocol(format!("encoding: {e}")))?;
        request.encode(&mut out, version).map_err(|e| self.protocol(format!("encoding: {e}")))?;
        let size = i32::try_from(out.len() - 4).map_err(|_| self.protocol("request over 2 GiB"))?;
        out[..4].copy_from_slice(&size.to_be_bytes());
        Ok((out.freeze(), correlation_id))
    }

    async fn enqueue(&self, outgoing: Outgoing) -> Result<()> {
        if let Some(reason) = self.shared.closed.lock().clone() {
            return Err(ClientError::Disconnected { addr: self.addr.clone(), reason });
        }
        self.outgoing
            .send(outgoing)
            .await
            .map_err(|_| ClientError::Disconnected { addr: self.addr.clone(), reason: "writer stopped".into() })
    }

    fn protocol(&self, reason: impl Into<String>) -> ClientError {
        ClientError::Protocol { addr: self.addr.clone(), reason: reason.into() }
    }
}

/// A request on its way: await [`PendingReply::wait`] for the answer.
#[derive(Debug)]
pub struct PendingReply<T> {
    answer: oneshot::Receiver<Result<Bytes>>,
    version: i16,
    api_key: i16,
    addr: String,
    timeout: Duration,
    response: std::marker::PhantomData<fn() -> T>,
}

impl<T> PendingReply<T> {
    /// Waits up to `timeout` instead of `request.timeout.ms`: for requests the broker holds
    /// on purpose, such as a JoinGroup waiting for the other members.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<T: Decodable + HeaderVersion> PendingReply<T> {
    /// Waits (up to `request.timeout.ms` from when the request was queued) for the answer.
    pub async fn wait(self) -> Result<T> {
        let Self { answer, version, api_key, addr, timeout, .. } = self;
        let what = || format!("{:?} v{version} to {addr}", ApiKey::try_from(api_key).ok());
        let protocol = |reason: String| ClientError::Protocol { addr: addr.clone(), reason };
        let mut body = tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| ClientError::Timeout { what: what(), after_ms: timeout.as_millis() as u64 })?
            .map_err(|_| ClientError::Disconnected { addr: addr.clone(), reason: "connection dropped".into() })??;
        ResponseHeader::decode(&mut body, T::header_version(version))
            .map_err(|e| protocol(format!("{}: bad response header: {e}", what())))?;
        T::decode(&mut body, version).map_err(|e| protocol(format!("{}: {e}", what())))
    }
}

async fn write_loop(addr: String, write: OwnedWriteHalf, mut queue: mpsc::Receiver<Outgoing>, shared: Arc<Shared>) {
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        // Write everything queued, then flush once.
        while let Some(Outgoing { frame, pending }) = next.take() {
            if let Some(p) = pending {
                // Registered before the bytes go out, so the answer always finds it; under
                // the `closed` lock, so a concurrent close either fails it or never happened.
                let closed = shared.closed.lock();
                if let Some(reason) = closed.as_ref() {
                    let _ = p.reply.send(Err(ClientError::Disconnected { addr: addr.clone(), reason: reason.clone() }));
                    continue;
                }
                shared.pending.lock().push_back(p);
            }
            if let Err(e) = writer.write_all(&frame).await {
                shared.close(&addr, format!("write failed: {e}"));
                return;
            }
            next = queue.try_recv().ok();
        }
        if let Err(e) = writer.flush().await {
            shared.close(&addr, format!("write failed: {e}"));
            return;
        }
        if shared.closed.lock().is_some() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_loop(addr: String, read: OwnedReadHalf, shared: Arc<Shared>) {
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let reason = loop {
        let size = match reader.read_i32().await {
            Ok(size) => size,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break "closed by the broker".to_string(),
            Err(e) => break format!("read failed: {e}"),
        };
        let Ok(size) = usize::try_from(size) else {
            break format!("negative frame size {size}");
        };
        if !(4..=MAX_RESPONSE_BYTES).contains(&size) {
            break format!("frame size {size} is outside 4..={MAX_RESPONSE_BYTES}");
        }
        let mut body = BytesMut::zeroed(size);
        if let Err(e) = reader.read_exact(&mut body).await {
            break format!("connection lost inside a {size}-byte answer: {e}");
        }
        let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let Some(pending) = shared.pending.lock().pop_front() else {
            break format!("an answer (correlation id {correlation_id}) to no request");
        };
        if pending.correlation_id != correlation_id {
            let reason = format!("answer for correlation id {correlation_id}, expected {}", pending.correlation_id);
            let _ = pending.reply.send(Err(ClientError::Protocol { addr: addr.clone(), reason: reason.clone() }));
            break reason;
        }
        // The caller may have given up (timeout); then the answer is dropped.
        let _ = pending.reply.send(Ok(body.freeze()));
    };
    shared.close(&addr, reason);
}
