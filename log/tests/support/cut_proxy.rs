//! A TCP proxy in front of a node that tests cut by the source of a connection: with every
//! node on its own loopback address, it drops one node's connections (or all of them) and
//! refuses new ones until healed, as a firewall rule or a broken switch port would.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct State {
    deny_all: bool,
    blocked: HashSet<IpAddr>,
    connections: Vec<(IpAddr, JoinHandle<()>)>,
}

/// Forwards the connections `listener` accepts to `target`, unless their source is cut.
pub struct CutProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    pub fn start(listener: TcpListener, target: SocketAddr) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, peer)) = listener.accept().await {
                let mut s = shared.lock();
                if s.deny_all || s.blocked.contains(&peer.ip()) {
                    continue; // dropped: the connection closes
                }
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = outbound.set_nodelay(true);
                        let _ = inbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                s.connections.retain(|(_, task)| !task.is_finished());
                s.connections.push((peer.ip(), forward));
            }
        });
        Self { addr, state, accept }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops the connections from `source` (every one, with `None`) and refuses new ones.
    pub fn cut(&self, source: Option<IpAddr>) {
        let mut s = self.state.lock();
        match source {
            Some(ip) => s.blocked.insert(ip),
            None => std::mem::replace(&mut s.deny_all, true),
        };
        for (ip, task) in &s.connections {
            if source.is_none_or(|b| b == *ip) {
                task.abort();
            }
        }
    }

    /// Forwards everything again.
    pub fn heal(&self) {
        let mut s = self.state.lock();
        s.deny_all = false;
        s.blocked.clear();
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for (_, task) in &self.state.lock().connections {
            task.abort();
        }
    }
}
