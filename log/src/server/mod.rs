//! The Kafka protocol server: accepts connections, reads size-prefixed frames (bounded by
//! `socket.request.max.bytes` before anything is allocated), decodes them with the
//! `kafka-protocol` crate and hands them to the [`Broker`]'s handlers.
//!
//! Each connection answers its requests strictly in order, one at a time, as Kafka does;
//! clients may pipeline up to their in-flight limit and simply find the next request
//! waiting in the socket. A request the broker cannot parse closes the connection with a
//! log line naming the peer and the reason, as Kafka does.

mod controller_node;
mod fetch_frame;
mod frame;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::broker::handlers::Reply;
use crate::broker::{Broker, BrokerConfig};
use crate::storage::FileRange;
use crate::storage::error::{LogError, Result};
pub use controller_node::RunningController;
use fetch_frame::Chunk;
pub(crate) use frame::{Decoded, decode_request, encode_response};

/// How long a connection may take to send the rest of a frame it has started.
const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for connections to finish their current request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A broker that is serving. Dropping it without [`RunningBroker::shutdown`] stops the
/// listener but skips the clean-shutdown work, like a crash.
#[derive(Debug)]
pub struct RunningBroker {
    broker: Arc<Broker>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    acceptor: tokio::task::JoinHandle<()>,
    /// The metadata publisher and the lifecycle manager: they must be done before the
    /// quorum and the logs close under them.
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a controlled shutdown waits for the controller to move leadership away.
const CONTROLLED_SHUTDOWN_PATIENCE: Duration = Duration::from_secs(30);

impl RunningBroker {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's state.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// In a cluster, first a controlled shutdown: leadership moves to other replicas.
    /// Then stops accepting, lets connections finish their current request, flushes every
    /// log, writes the checkpoints and the clean-shutdown marker (with the broker epoch, so
    /// the next start may register at once).
    pub async fn shutdown(self) -> Result<()> {
        if !self.broker.config().cluster.is_single_node() {
            // Leadership moves before the node stops, so clients see a new leader at once
            // instead of waiting out this broker's session.
            self.broker.lifecycle.controlled_shutdown(&self.broker, CONTROLLED_SHUTDOWN_PATIENCE).await;
        }
        let _ = self.stop.send(true);
        let _ = self.acceptor.await;
        for task in self.background {
            let _ = task.await;
        }
        self.broker.shutdown_quorum().await;
        let logs = self.broker.log_manager().clone();
        tokio::task::spawn_blocking(move || logs.shutdown())
            .await
            .map_err(|e| LogError::Closed(format!("shutdown task failed: {e}")))??;
        tracing::info!(addr = %self.addr, "broker stopped cleanly");
        Ok(())
    }
}

impl Broker {
    /// Starts serving: binds the listener and returns a handle to the running broker.
    pub async fn start(config: BrokerConfig) -> Result<RunningBroker> {
        start(config).await
    }
}

/// Binds the listener (so that the broker registers the port it really has), opens the
/// broker and starts serving.
pub(crate) async fn start(mut config: BrokerConfig) -> Result<RunningBroker> {
    let listen = config.listener;
    let listener =
        TcpListener::bind(listen).await.map_err(|source| LogError::Io { path: listen.to_string().into(), source })?;
    let addr = listener.local_addr().map_err(|source| LogError::Io { path: listen.to_string().into(), source })?;
    if config.advertised.is_none() {
        let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
        config.advertised = Some((host, addr.port()));
    }
    let broker = Broker::open(config).await?;
    broker.log_manager().start_background();
    let (stop, stop_rx) = watch::channel(false);
    crate::broker::group::GroupService::start(&broker, stop_rx.clone());
    let mut background = vec![
        tokio::spawn(Broker::run_metadata_publisher(broker.clone(), stop_rx.clone())),
        tokio::spawn(crate::broker::BrokerLifecycleManager::run(broker.clone(), stop_rx.clone())),
        tokio::spawn(crate::broker::ReplicaManager::run(broker.clone(), stop_rx.clone())),
        tokio::spawn(crate::broker::replica_manager::fetcher::run(broker.clone(), stop_rx.clone())),
    ];
    if let Some(controller) = broker.controller.local() {
        background.push(tokio::spawn(controller.clone().run_session_checks(stop_rx.clone())));
    }
    let acceptor = tokio::spawn(accept_loop(broker.clone(), listener, stop_rx));
    tracing::info!(%addr, data_dir = %broker.config().data_dir().display(), "broker listening");
    Ok(RunningBroker { broker, addr, stop, acceptor, background })
}

async fn accept_loop(broker: Arc<Broker>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(broker.config().max_connections));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, max = broker.config().max_connections, "max.connections reached; closing the new connection");
                    drop(socket);
                    continue;
                };
                let broker = broker.clone();
                let stop = stop.clone();
                connections.spawn(async move {
                    serve_connection(&broker, socket, peer, stop).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "connections still busy at shutdown; closing them");
        connections.shutdown().await;
    }
}

/// Why a connection is closed.
#[derive(Debug)]
pub(crate) enum Close {
    /// The peer closed it.
    Eof,
    /// The peer sent something the broker will not answer; the reason is logged.
    Protocol(String),
    /// The socket failed.
    Io(std::io::Error),
}

async fn serve_connection(broker: &Broker, socket: TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
    let _ = socket.set_nodelay(true);
    let (reader, writer) = socket.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let max = broker.config().max_request_bytes;
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => break,
            frame = read_frame(&mut reader, max) => frame,
        };
        let result = match frame {
            Ok(frame) => answer(broker, peer, frame, &mut writer).await,
            Err(close) => Err(close),
        };
        match result {
            Ok(()) => {}
            Err(Close::Eof) => break,
            Err(Close::Protocol(reason)) => {
                tracing::warn!(%peer, %reason, "closing connection");
                break;
            }
            Err(Close::Io(e)) => {
                tracing::debug!(%peer, error = %e, "connection error");
                break;
            }
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_frame<R: AsyncReadExt + Unpin>(reader: &mut R, max: usize) -> Result<Bytes, Close> {
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Close::Eof),
        Err(e) => return Err(Close::Io(e)),
    };
    if size < 0 {
        return Err(Close::Protocol(format!("negative frame size {size}")));
    }
    if size as usize > max {
        return Err(Close::Protocol(format!("request of {size} bytes exceeds socket.request.max.bytes={max}")));
    }
    let mut body = BytesMut::zeroed(size as usize);
    match tokio::time::timeout(FRAME_READ_TIMEOUT, reader.read_exact(&mut body)).await {
        Ok(Ok(_)) => Ok(body.freeze()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(Close::Protocol(format!("connection closed inside a {size}-byte frame")))
        }
        Ok(Err(e)) => Err(Close::Io(e)),
        Err(_) => Err(Close::Protocol(format!("no complete {size}-byte frame within {FRAME_READ_TIMEOUT:?}"))),
    }
}

async fn answer(
    broker: &Broker,
    peer: SocketAddr,
    frame: Bytes,
    writer: &mut BufWriter<OwnedWriteHalf>,
) -> Result<(), Close> {
    let response = match decode_request(frame)? {
        Decoded::Request { header, request } => {
            let api_key = header.request_api_key;
            let version = header.request_api_version;
            let correlation_id = header.correlation_id;
            match crate::broker::handlers::handle(broker, peer, &header, *request).await {
                Some(Reply::Message(response)) => encode_response(api_key, version, correlation_id, &response)?,
                Some(Reply::Fetch(reply)) => match fetch_frame::encode(version, correlation_id, &reply)? {
                    Some(chunks) => return write_chunks(writer, chunks).await,
                    None => {
                        let response = reply.into_response().map_err(|e| Close::Protocol(e.to_string()))?;
                        encode_response(api_key, version, correlation_id, &ResponseKind::Fetch(response))?
                    }
                },
                None => return Ok(()),
            }
        }
        Decoded::Immediate(bytes) => bytes,
    };
    writer.write_all(&response).await.map_err(Close::Io)?;
    writer.flush().await.map_err(Close::Io)
}

/// Writes a frame whose record batches are sent from the segment files by the kernel.
async fn write_chunks(writer: &mut BufWriter<OwnedWriteHalf>, chunks: Vec<Chunk>) -> Result<(), Close> {
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(bytes) => writer.write_all(&bytes).await.map_err(Close::Io)?,
            Chunk::File(range) => {
                writer.flush().await.map_err(Close::Io)?;
                send_file_range(writer.get_ref().as_ref(), &range).await?;
            }
        }
    }
    writer.flush().await.map_err(Close::Io)
}

/// Sends `range` with `sendfile(2)`, falling back to read-and-write where the kernel
/// cannot (a file system without it).
async fn send_file_range(socket: &TcpStream, range: &FileRange) -> Result<(), Close> {
    let mut offset = range.position;
    let end = range.position + range.length;
    while offset < end {
        let want = usize::try_from(end - offset).unwrap_or(usize::MAX).min(1 << 30);
        socket.writable().await.map_err(Close::Io)?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(socket, &*range.file, Some(&mut offset), want).map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => {
                // The segment shrank under the fetch. The frame promised more bytes than
                // exist, so the connection cannot continue (Kafka closes it too).
                return Err(Close::Protocol(format!(
                    "{} ended at byte {offset} while sending a fetch that expected {end}",
                    range.path.display()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
                return read_and_write_range(socket, range, offset).await;
            }
            Err(e) => return Err(Close::Io(e)),
        }
    }
    Ok(())
}

async fn read_and_write_range(socket: &TcpStream, range: &FileRange, mut offset: u64) -> Result<(), Close> {
    use std::os::unix::fs::FileExt;
    let end = range.position + range.length;
    let mut buf = vec![0u8; 256 * 1024];
    while offset < end {
        let n = usize::try_from(end - offset).unwrap_or(usize::MAX).min(buf.len());
        range.file.read_exact_at(&mut buf[..n], offset).map_err(Close::Io)?;
        let mut written = 0;
        while written < n {
            socket.writable().await.map_err(Close::Io)?;
            match socket.try_write(&buf[written..n]) {
                Ok(k) => written += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Close::Io(e)),
            }
        }
        offset += n as u64;
    }
    Ok(())
}

pub(crate) fn put_frame(
    out: &mut BytesMut,
    body: impl FnOnce(&mut BytesMut) -> Result<(), Close>,
) -> Result<Bytes, Close> {
    out.put_i32(0);
    body(out)?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(std::mem::take(out).freeze())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;

    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    fn range(file: std::fs::File, position: u64, length: u64) -> FileRange {
        let path = "segment.log".into();
        FileRange { file: Arc::new(file), path, position, length, first_offset: 0, next_offset: 0 }
    }

    #[tokio::test]
    async fn file_ranges_are_sent_whole_and_a_shrunken_file_closes_the_connection() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let (server, mut client) = socket_pair().await;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        send_file_range(&server, &range(file.try_clone().unwrap(), 1_000, 250_000)).await.unwrap();
        // The file has 300,000 bytes; a range promising more fails rather than short-sending.
        let err = send_file_range(&server, &range(file, 299_000, 5_000)).await.unwrap_err();
        assert!(matches!(&err, Close::Protocol(reason) if reason.contains("ended at byte 300000")), "{err:?}");
        drop(server);
        let got = reader.await.unwrap();
        assert_eq!(&got[..250_000], &data[1_000..251_000]);
        assert_eq!(&got[250_000..], &data[299_000..], "the part that existed was sent before the failure");
    }
}
