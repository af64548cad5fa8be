//! The broker's life in the cluster (Kafka's BrokerLifecycleManager): it registers with
//! the active controller under a new incarnation id, heartbeats every
//! `broker.heartbeat.interval.ms` so that its session holds, is unfenced once it has
//! caught up with the metadata log, and registers again if the controller forgot it.
//! Producer ids come from the controller in blocks, as KIP-730 has them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

use super::{ApiError, Broker};
use crate::codes;
use crate::controller::records::BrokerEndpoint;
use crate::controller::{
    BrokerHeartbeat, ControllerError, ControllerReply, ControllerRequest, HeartbeatReply, RegisterBroker,
};

/// How long start-up keeps retrying a registration the controller refuses (another
/// incarnation's session still alive, a controller election under way).
const REGISTRATION_PATIENCE: Duration = Duration::from_secs(30);

/// This process's registration, and its block of producer ids.
#[derive(Debug)]
pub struct BrokerLifecycleManager {
    incarnation_id: Uuid,
    /// The registration's epoch; -1 until registered.
    broker_epoch: AtomicI64,
    /// The epoch the previous process shut down cleanly from, until it is used.
    previous_broker_epoch: Mutex<Option<i64>>,
    /// A controlled shutdown has begun: heartbeats ask for it.
    want_shutdown: AtomicBool,
    /// The producer ids still to hand out: `next..end`.
    producer_ids: Mutex<(i64, i64)>,
}

impl Default for BrokerLifecycleManager {
    fn default() -> Self {
        Self::new(None)
    }
}

fn refused(e: impl std::fmt::Display, code: i16) -> ApiError {
    ApiError::new(code, e.to_string())
}

/// Runs `attempt` every heartbeat interval until it answers `true`. A refusal by the
/// controller fails start-up after [`REGISTRATION_PATIENCE`]; no controller at all (the
/// quorum still electing, or the other voters not started yet) is waited out.
async fn retry_at_start<F, Fut>(broker: &Broker, what: &str, mut attempt: F) -> Result<(), ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, ApiError>>,
{
    let deadline = tokio::time::Instant::now() + REGISTRATION_PATIENCE;
    let every = Duration::from_millis(broker.config.cluster.broker_heartbeat_interval_ms.max(1) as u64);
    loop {
        match attempt().await {
            Ok(true) => return Ok(()),
            Ok(false) => tracing::debug!(what, "not yet; retrying"),
            // The voters know this node as one of another cluster: waiting cannot help.
            Err(e) if e.code == codes::INCONSISTENT_CLUSTER_ID => return Err(e),
            Err(e) if e.code == codes::REQUEST_TIMED_OUT => {
                tracing::info!(what, reason = %e.message, "waiting for the controller quorum");
            }
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(e) => tracing::info!(what, code = e.code, reason = %e.message, "refused; retrying"),
        }
        tokio::time::sleep(every).await;
    }
}

fn unexpected(reply: &ControllerReply) -> ApiError {
    ApiError::new(codes::UNKNOWN_SERVER_ERROR, format!("the controller answered with {reply:?}"))
}

impl BrokerLifecycleManager {
    /// A new incarnation; `previous_broker_epoch` is the one the clean-shutdown marker
    /// recorded, if the last process stopped cleanly.
    pub fn new(previous_broker_epoch: Option<i64>) -> Self {
        Self {
            incarnation_id: Uuid::new_v4(),
            broker_epoch: AtomicI64::new(-1),
            previous_broker_epoch: Mutex::new(previous_broker_epoch),
            want_shutdown: AtomicBool::new(false),
            producer_ids: Mutex::new((0, 0)),
        }
    }

    /// Random for every process start.
    pub fn incarnation_id(&self) -> Uuid {
        self.incarnation_id
    }

    /// The registration's epoch, -1 before the first registration.
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    /// How long one request of the broker's lifecycle waits for the controller: a
    /// heartbeat that takes longer than the session is of no use.
    fn patience(broker: &Broker) -> Duration {
        Duration::from_millis(broker.config.cluster.broker_session_timeout_ms.max(1) as u64)
    }

    /// Registers, retrying refusals (another incarnation's session still alive) for a
    /// bounded time and waiting as long as it takes for a controller to be elected. The
    /// broker stays fenced until [`Self::wait_until_unfenced`].
    pub(crate) async fn start(&self, broker: &Broker) -> Result<(), ApiError> {
        if !broker.quorum.is_voter() {
            let observe = || async { self.observe(broker).await.map(|()| true) };
            retry_at_start(broker, "following the metadata log", observe).await?;
        }
        retry_at_start(broker, "broker registration", || async { self.register(broker).await.map(|()| true) }).await
    }

    /// A broker-only node asks the active controller to replicate the metadata log to
    /// its controller listener.
    async fn observe(&self, broker: &Broker) -> Result<(), ApiError> {
        let Some(listener) = broker.config.cluster.advertised_controller_listener() else {
            let reason = "a broker-only node needs a controller listener to follow the metadata log";
            return Err(ApiError::new(codes::INVALID_REQUEST, reason));
        };
        let host = match listener.host.as_str() {
            "" | "0.0.0.0" | "::" => broker.advertised.lock().0.clone(),
            host => host.to_owned(),
        };
        // The leader connects to it by address: resolved here, written as Rust parses it.
        let resolved = super::cluster_config::resolve(&host, listener.port)
            .ok_or_else(|| ApiError::new(codes::INVALID_REQUEST, format!("{host} does not resolve")))?;
        let addr = resolved.to_string();
        let request = ControllerRequest::AddObserver { node_id: broker.config.node_id, addr };
        match broker.ask_controller(request, Self::patience(broker)).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(refused(&e, e.code())),
        }
    }

    /// Heartbeats until the controller unfences this broker, which it does once the
    /// broker reports that it applied the metadata log up to its registration.
    pub(crate) async fn wait_until_unfenced(&self, broker: &Broker) -> Result<(), ApiError> {
        retry_at_start(broker, "unfencing", || async { self.heartbeat(broker).await.map(|fenced| !fenced) }).await
    }

    async fn register(&self, broker: &Broker) -> Result<(), ApiError> {
        let (host, port) = broker.advertised.lock().clone();
        let request = RegisterBroker {
            broker_id: broker.config.node_id,
            incarnation_id: self.incarnation_id,
            rack: broker.config.cluster.rack.clone(),
            endpoints: vec![BrokerEndpoint { name: "PLAINTEXT".into(), host, port }],
            previous_broker_epoch: *self.previous_broker_epoch.lock(),
        };
        let reply = broker.ask_controller(ControllerRequest::RegisterBroker(request), Self::patience(broker)).await?;
        let epoch = match reply.map_err(|e| refused(&e, e.code()))? {
            ControllerReply::BrokerEpoch(epoch) => epoch,
            other => return Err(unexpected(&other)),
        };
        self.broker_epoch.store(epoch, Ordering::Release);
        self.previous_broker_epoch.lock().take(); // good for one registration only
        broker.replicas.set_broker_epoch(epoch);
        broker.logs.set_broker_epoch(epoch);
        tracing::info!(broker_epoch = epoch, incarnation = %self.incarnation_id, "registered with the controller");
        Ok(())
    }

    /// One heartbeat; returns whether the broker is still fenced.
    async fn heartbeat(&self, broker: &Broker) -> Result<bool, ApiError> {
        Ok(self.beat(broker).await?.is_fenced)
    }

    /// One heartbeat, asking for a controlled shutdown once one has begun.
    async fn beat(&self, broker: &Broker) -> Result<HeartbeatReply, ApiError> {
        let beat = BrokerHeartbeat {
            broker_id: broker.config.node_id,
            broker_epoch: self.broker_epoch(),
            // What the broker has applied to its logs, not merely what its image holds: it
            // may lead only partitions it has set up.
            metadata_offset: broker.published_offset(),
            want_shutdown: self.want_shutdown.load(Ordering::Acquire),
        };
        let reply = broker.ask_controller(ControllerRequest::BrokerHeartbeat(beat), Self::patience(broker)).await?;
        match reply {
            Ok(ControllerReply::Heartbeat(reply)) => Ok(reply),
            Ok(other) => Err(unexpected(&other)),
            Err(e @ (ControllerError::BrokerIdNotRegistered(_) | ControllerError::StaleBrokerEpoch { .. })) => {
                tracing::warn!(reason = %e, "the controller no longer knows this registration; registering again");
                self.register(broker).await?;
                Ok(HeartbeatReply { is_fenced: true, should_shut_down: false })
            }
            Err(e) => Err(refused(&e, e.code())),
        }
    }

    /// Heartbeats until `stop`.
    pub(crate) async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
        let every = Duration::from_millis(broker.config.cluster.broker_heartbeat_interval_ms.max(1) as u64);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
                _ = ticks.tick() => {}
            }
            if let Err(e) = broker.lifecycle.heartbeat(&broker).await {
                tracing::warn!(code = e.code, reason = %e.message, "broker heartbeat failed");
            }
        }
    }

    /// A controlled shutdown (Kafka's, on SIGTERM): heartbeats ask the controller to move
    /// every leadership of this broker elsewhere, until it says they have moved or
    /// `patience` runs out. Returns whether they moved.
    pub(crate) async fn controlled_shutdown(&self, broker: &Broker, patience: Duration) -> bool {
        self.want_shutdown.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + patience;
        let every = Duration::from_millis(broker.config.cluster.broker_heartbeat_interval_ms.clamp(1, 500) as u64);
        loop {
            match self.beat(broker).await {
                Ok(reply) if reply.should_shut_down => {
                    tracing::info!("controlled shutdown: leadership has moved away");
                    return true;
                }
                Ok(_) => {}
                Err(e) if e.code == codes::REQUEST_TIMED_OUT => {
                    // No controller to move anything: waiting longer cannot help.
                    tracing::warn!(reason = %e.message, "controlled shutdown: no active controller; stopping anyway");
                    return false;
                }
                Err(e) => tracing::info!(code = e.code, reason = %e.message, "controlled shutdown heartbeat failed"),
            }
            if tokio::time::Instant::now() + every > deadline {
                tracing::warn!(?patience, "controlled shutdown: the controller did not move leadership in time");
                return false;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// A producer id never handed out before, from this broker's block; a new block from
    /// the controller when it runs out.
    pub(crate) async fn next_producer_id(&self, broker: &Broker) -> Result<i64, ApiError> {
        {
            let mut ids = self.producer_ids.lock();
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        let (node, epoch) = (broker.config.node_id, self.broker_epoch());
        let request = ControllerRequest::AllocateProducerIds { broker_id: node, broker_epoch: epoch };
        let block = broker.ask_controller(request, Self::patience(broker)).await?;
        let (first, size) = match block.map_err(|e| refused(&e, e.code()))? {
            ControllerReply::ProducerIds { first, size } => (first, size),
            other => return Err(unexpected(&other)),
        };
        let mut ids = self.producer_ids.lock();
        *ids = (first + 1, first + size);
        Ok(first)
    }
}
