//! A TCP proxy between a client and a broker that tests can pause (stop forwarding
//! without closing) and cut (close every connection at once, mid-request or not).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Shared {
    upstream: Mutex<Option<String>>,
    connections: Mutex<Vec<JoinHandle<()>>>,
    cuts: AtomicUsize,
    accepted: AtomicUsize,
}

pub struct Proxy {
    addr: String,
    shared: Arc<Shared>,
    paused: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

impl Proxy {
    /// Listens on an ephemeral loopback port; forwards once [`Proxy::forward_to`] is called.
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::default());
        let (paused, _) = watch::channel(false);
        let accept = {
            let shared = shared.clone();
            let paused = paused.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Some(upstream) = shared.upstream.lock().clone() else { continue };
                    let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let up = tokio::spawn(pump(client_read, server_write, paused.subscribe()));
                    let down = tokio::spawn(pump(server_read, client_write, paused.subscribe()));
                    let mut connections = shared.connections.lock();
                    connections.retain(|c| !c.is_finished());
                    connections.push(up);
                    connections.push(down);
                }
            })
        };
        Self { addr, shared, paused, accept }
    }

    /// Starts a proxy in front of `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let proxy = Self::bind().await;
        proxy.forward_to(upstream);
        proxy
    }

    pub fn forward_to(&self, upstream: &str) {
        *self.shared.upstream.lock() = Some(upstream.to_string());
    }

    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Stops forwarding bytes; connections stay open.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Closes every proxied connection.
    pub fn cut_all(&self) {
        for connection in self.shared.connections.lock().drain(..) {
            connection.abort();
        }
        self.shared.cuts.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections proxied so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::Relaxed)
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
