//! What the client tests share: an embedded broker (optionally behind a proxy that can
//! pause and cut connections).

#![allow(dead_code)]

pub mod proxy;

use freshet_log::broker::{Broker, BrokerConfig, RunningBroker};

/// An embedded broker without topic auto-creation, and its address.
pub async fn start() -> (tempfile::TempDir, RunningBroker, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::embedded(dir.path());
    config.auto_create_topics = false;
    let broker = Broker::start(config).await.unwrap();
    let addr = broker.local_addr().to_string();
    (dir, broker, addr)
}

/// A broker that advertises a proxy in front of it, so every client connection (after
/// bootstrap too) goes through the proxy.
pub async fn start_behind_proxy() -> (tempfile::TempDir, RunningBroker, proxy::Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy::Proxy::bind().await;
    let mut config = BrokerConfig::embedded(dir.path());
    config.auto_create_topics = false;
    config.advertised = Some(("127.0.0.1".to_string(), proxy.port()));
    let broker = Broker::start(config).await.unwrap();
    proxy.forward_to(&broker.local_addr().to_string());
    (dir, broker, proxy)
}
