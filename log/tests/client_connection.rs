//! The client's broker connection: version negotiation, pipelining, and what happens when
//! the broker misbehaves (silence, wrong correlation ids, closing mid-request).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::BytesMut;
use freshet_log::broker::{Broker, BrokerConfig};
use freshet_log::client::{ClientError, Connection, ConnectionConfig};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn quick() -> ConnectionConfig {
    ConnectionConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        ..ConnectionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiates_versions_and_pipelines_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig::embedded(dir.path())).await.unwrap();
    let conn = Connection::connect(&broker.local_addr().to_string(), ConnectionConfig::default()).await.unwrap();
    // The newest version both speak: the broker offers Produce up to v12, the client v11.
    assert_eq!(conn.version(ApiKey::Produce).unwrap(), 11);
    assert_eq!(conn.version(ApiKey::Fetch).unwrap(), 12);
    assert_eq!(conn.version(ApiKey::Metadata).unwrap(), 12);

    // 100 requests in flight on one connection, from 100 tasks; each gets its own answer.
    let conn = std::sync::Arc::new(conn);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let conn = conn.clone();
        tasks.spawn(async move {
            let topic = CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(format!("t{i}"))))
                .with_num_partitions(1 + i % 3)
                .with_replication_factor(1);
            let response = conn.send(&CreateTopicsRequest::default().with_topics(vec![topic])).await.unwrap();
            (i, response.topics[0].name.0.to_string(), response.topics[0].error_code)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, name, code) = done.unwrap();
        assert_eq!((name, code), (format!("t{i}"), 0));
    }
    let metadata = conn.send(&MetadataRequest::default().with_topics(None)).await.unwrap();
    assert_eq!(metadata.topics.len(), 100);
    drop(conn);
    broker.shutdown().await.unwrap();
}

/// A fake broker: answers ApiVersions with `apis`, then runs `then` on the socket.
async fn fake_broker<F, Fut>(apis: Vec<(i16, i16, i16)>, then: F) -> String
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let (correlation, version) = read_request(&mut socket).await;
        let response = ApiVersionsResponse::default().with_api_keys(
            apis.into_iter()
                .map(|(key, min, max)| {
                    ApiVersion::default().with_api_key(key).with_min_version(min).with_max_version(max)
                })
                .collect(),
        );
        write_response(&mut socket, correlation, &response, version, 0).await;
        then(socket).await;
    });
    addr
}

async fn read_request(socket: &mut TcpStream) -> (i32, i16) {
    let size = socket.read_i32().await.unwrap();
    let mut body = vec![0u8; size as usize];
    socket.read_exact(&mut body).await.unwrap();
    let version = i16::from_be_bytes([body[2], body[3]]);
    (i32::from_be_bytes([body[4], body[5], body[6], body[7]]), version)
}

async fn write_response<R: Encodable + HeaderVersion>(
    socket: &mut TcpStream,
    correlation: i32,
    response: &R,
    version: i16,
    header_version: i16,
) {
    let mut body = BytesMut::new();
    ResponseHeader::default().with_correlation_id(correlation).encode(&mut body, header_version).unwrap();
    response.encode(&mut body, version).unwrap();
    socket.write_all(&(body.len() as i32).to_be_bytes()).await.unwrap();
    socket.write_all(&body).await.unwrap();
}

#[tokio::test]
async fn an_api_the_broker_lacks_is_a_typed_error() {
    let addr = fake_broker(vec![(18, 0, 3), (3, 0, 0)], |s| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    })
    .await;
    let conn = Connection::connect(&addr, quick()).await.unwrap();
    let err = conn.version(ApiKey::Produce).unwrap_err();
    assert!(matches!(err, ClientError::UnsupportedVersion { ref broker, .. } if broker == "none"), "{err}");
    // Metadata v0 is older than this client's oldest (v1).
    let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
    assert!(err.to_string().contains("broker: v0-v0"), "{err}");
}

#[tokio::test]
async fn silence_closing_and_wrong_correlation_ids_fail_requests_cleanly() {
    // Never answers: connecting times out.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap().to_string();
    let err = Connection::connect(&silent, quick()).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(err.is_retriable());

    // Closes after the handshake: the waiting request and every later one fail.
    let addr = fake_broker(vec![(18, 0, 3), (3, 1, 12)], |mut s| async move {
        read_request(&mut s).await;
        drop(s);
    })
    .await;
    let conn = Connection::connect(&addr, quick()).await.unwrap();
    let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
    assert!(matches!(err, ClientError::Disconnected { .. }), "{err}");
    assert!(conn.is_closed());
    assert!(matches!(conn.send(&MetadataRequest::default()).await, Err(ClientError::Disconnected { .. })));

    // Answers with someone else's correlation id: a protocol error, then closed.
    let addr = fake_broker(vec![(18, 0, 3), (3, 1, 12)], |mut s| async move {
        let (correlation, version) = read_request(&mut s).await;
        let header = MetadataResponse::header_version(version);
        write_response(&mut s, correlation + 7, &MetadataResponse::default(), version, header).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let conn = Connection::connect(&addr, quick()).await.unwrap();
    let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
    assert!(matches!(err, ClientError::Protocol { ref reason, .. } if reason.contains("correlation")), "{err}");
    assert!(conn.is_closed());

    // Garbage frame size: closed with the reason.
    let addr = fake_broker(vec![(18, 0, 3), (3, 1, 12)], |mut s| async move {
        read_request(&mut s).await;
        s.write_all(&(-5i32).to_be_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let conn = Connection::connect(&addr, quick()).await.unwrap();
    let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
    assert!(err.to_string().contains("negative frame size"), "{err}");
}
