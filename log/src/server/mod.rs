//! The Kafka protocol server: accepts connections, reads size-prefixed frames (bounded by
//! `socket.request.max.bytes` before anything is allocated), decodes them with the
//! `kafka-protocol` crate and hands them to the [`Broker`]'s handlers.
//!
//! Each connection answers its requests strictly in order, one at a time, as Kafka does;
//! clients may pipeline up to their in-flight limit and simply find the next request
//! waiting in the socket. A request the broker cannot parse closes the connection with a
//! log line naming the peer and the reason, as Kafka does.

mod frame;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::broker::{Broker, BrokerConfig};
use crate::storage::error::{LogError, Result};
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
}

impl RunningBroker {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's state.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, lets connections finish their current request, then flushes every
    /// log, writes the checkpoints and the clean-shutdown marker.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let _ = self.acceptor.await;
        let logs = self.broker.log_manager().clone();
        tokio::task::spawn_blocking(move || logs.shutdown())
            .await
            .map_err(|e| LogError::Closed(format!("shutdown task failed: {e}")))??;
        tracing::info!(addr = %self.addr, "broker stopped cleanly");
        Ok(())
    }
}

/// Opens the broker and starts serving on its listener.
pub(crate) async fn start(config: BrokerConfig) -> Result<RunningBroker> {
    let listen = config.listener;
    let explicit_advertised = config.advertised.is_some();
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(|e| LogError::Closed(format!("broker start task failed: {e}")))??;
    let listener =
        TcpListener::bind(listen).await.map_err(|source| LogError::Io { path: listen.to_string().into(), source })?;
    let addr = listener.local_addr().map_err(|source| LogError::Io { path: listen.to_string().into(), source })?;
    if !explicit_advertised {
        let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
        *broker.advertised.lock() = (host, addr.port());
    }
    broker.log_manager().start_background();
    let (stop, stop_rx) = watch::channel(false);
    let acceptor = tokio::spawn(accept_loop(broker.clone(), listener, stop_rx));
    tracing::info!(%addr, data_dir = %broker.config().data_dir().display(), "broker listening");
    Ok(RunningBroker { broker, addr, stop, acceptor })
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
            Ok(frame) => answer(broker, frame, &mut writer).await,
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

async fn answer<W: AsyncWriteExt + Unpin>(broker: &Broker, frame: Bytes, writer: &mut W) -> Result<(), Close> {
    let response = match decode_request(frame)? {
        Decoded::Request { header, request } => {
            let api_key = header.request_api_key;
            let version = header.request_api_version;
            let correlation_id = header.correlation_id;
            match crate::broker::handlers::handle(broker, &header, *request).await {
                Some(response) => encode_response(api_key, version, correlation_id, &response)?,
                None => return Ok(()),
            }
        }
        Decoded::Immediate(bytes) => bytes,
    };
    writer.write_all(&response).await.map_err(Close::Io)?;
    writer.flush().await.map_err(Close::Io)
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
