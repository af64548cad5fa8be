//! What the client tests share: an embedded broker (optionally behind a proxy that can
//! pause and cut connections).

#![allow(dead_code)]

pub mod cut_proxy;
pub mod orders;
pub mod proxy;

use freshet_log::broker::{Broker, BrokerConfig};
use freshet_log::server::RunningBroker;

/// `n` loopback addresses with ports free a moment ago (for configs that must name their
/// ports before anything binds them, such as `controller.quorum.voters`). They come from
/// below Linux's ephemeral range (32768 and up), so that no outgoing connection of a test
/// running alongside takes one before its node binds it.
pub fn free_ports(n: usize) -> Vec<std::net::SocketAddr> {
    free_ports_on(std::net::Ipv4Addr::LOCALHOST.into(), n)
}

/// Like [`free_ports`], on the loopback address `ip` (any of 127.0.0.0/8 on Linux).
pub fn free_ports_on(ip: std::net::IpAddr, n: usize) -> Vec<std::net::SocketAddr> {
    let nanos = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64;
    let mut x = (nanos ^ u64::from(std::process::id()).rotate_left(32)) | 1;
    let mut held = Vec::new();
    while held.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 12_000) as u16;
        if let Ok(listener) = std::net::TcpListener::bind((ip, port)) {
            held.push(listener);
        }
    }
    held.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// Logs with `RUST_LOG` (e.g. `RUST_LOG=freshet_log=info`), through the test harness.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// An embedded broker without topic auto-creation, and its address.
pub async fn start() -> (tempfile::TempDir, RunningBroker, String) {
    start_with(|_| {}).await
}

/// Like [`start`], with the config adjusted by `adjust` first.
pub async fn start_with(adjust: impl FnOnce(&mut BrokerConfig)) -> (tempfile::TempDir, RunningBroker, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::embedded(dir.path());
    config.auto_create_topics = false;
    adjust(&mut config);
    let broker = Broker::start(config).await.unwrap();
    let addr = broker.local_addr().to_string();
    (dir, broker, addr)
}

/// Restarts a broker on the same data directory and port (a clean shutdown first, or
/// a crash: dropped without shutdown).
pub async fn restart(
    dir: &tempfile::TempDir,
    broker: RunningBroker,
    clean: bool,
    adjust: impl FnOnce(&mut BrokerConfig),
) -> RunningBroker {
    let addr = broker.local_addr();
    if clean {
        broker.shutdown().await.unwrap();
    } else {
        drop(broker);
    }
    let mut config = BrokerConfig::embedded(dir.path());
    config.auto_create_topics = false;
    config.listener = addr;
    adjust(&mut config);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Broker::start(config.clone()).await {
            Ok(b) => return b,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "port or directory still held; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("restart failed: {e}"),
        }
    }
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
