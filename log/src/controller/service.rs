//! The active controller's shell: runs [`QuorumController`] requests on the node that leads
//! the quorum and answers only once their records commit.
//!
//! A node that gains leadership first confirms it with a quorum and waits until its image
//! holds every committed record, then builds a fresh `QuorumController` over that image
//! (broker sessions start anew, as in Kafka). Requests run one at a time: each may depend
//! on the records of the one before. If an append fails or leadership moves, the
//! controller's uncommitted state is dropped and rebuilt from the committed image next time.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::quorum::network::{ControllerFuture, ControllerHandler};
use super::quorum::{MetadataQuorum, QuorumError};
use super::{
    ControllerConfig, ControllerOutput, ControllerReply, ControllerRequest, ControllerResponse, QuorumController,
};
use crate::time::Clock;

/// Runs controller requests where the quorum allows.
#[derive(Debug)]
pub struct ControllerService {
    quorum: Arc<MetadataQuorum>,
    config: ControllerConfig,
    clock: Arc<dyn Clock>,
    /// The broker in this process (combined mode), and its incarnation.
    local_broker: Option<(i32, uuid::Uuid)>,
    /// The controller, and the Raft term it was built in.
    active: Mutex<Option<(u64, QuorumController)>>,
}

impl ControllerService {
    /// A service over `quorum`.
    pub fn new(quorum: Arc<MetadataQuorum>, config: ControllerConfig, clock: Arc<dyn Clock>) -> Self {
        Self { quorum, config, clock, local_broker: None, active: Mutex::new(None) }
    }

    /// Names the broker that runs in this process with `incarnation_id`. When this node
    /// becomes the active controller and finds that broker registered by an earlier
    /// incarnation, that one died with the earlier controller of this process: its session
    /// is over at once, rather than after `broker.session.timeout.ms`.
    pub fn with_local_broker(mut self, broker_id: i32, incarnation_id: uuid::Uuid) -> Self {
        self.local_broker = Some((broker_id, incarnation_id));
        self
    }

    /// The quorum underneath.
    pub fn quorum(&self) -> &Arc<MetadataQuorum> {
        &self.quorum
    }

    /// Runs a broker's request, if this node is the active controller.
    pub async fn handle(&self, request: ControllerRequest) -> Result<ControllerResponse, QuorumError> {
        match request {
            ControllerRequest::DescribeQuorum => {
                let quorum = self.quorum.describe()?;
                return Ok(ControllerResponse { reply: Ok(ControllerReply::Quorum(quorum)), metadata_offset: -1 });
            }
            ControllerRequest::AddObserver { node_id, addr } => {
                if !self.quorum.is_leader() {
                    return Err(QuorumError::NotController { leader: self.quorum.leader() });
                }
                self.quorum.add_observer(node_id as u64, addr).await?;
                return Ok(ControllerResponse { reply: Ok(ControllerReply::Done), metadata_offset: -1 });
            }
            _ => {}
        }
        let (reply, metadata_offset) = self.run(|c, now| request.apply(c, now)).await?;
        Ok(ControllerResponse { reply, metadata_offset })
    }

    /// Runs `request` on the active controller and commits what it wrote; returns the
    /// answer and the offset of the last record written (or of the image it read).
    /// NOT_CONTROLLER (with the leader, when known) on any other node.
    pub async fn run<T>(
        &self,
        request: impl FnOnce(&mut QuorumController, i64) -> ControllerOutput<T>,
    ) -> Result<(T, i64), QuorumError> {
        let mut active = self.active.lock().await;
        let now_ms = self.clock.now_ms();
        let term = self.quorum.current_term();
        if !self.quorum.is_leader() {
            *active = None;
            return Err(QuorumError::NotController { leader: self.quorum.leader() });
        }
        if active.as_ref().is_none_or(|(t, _)| *t != term) {
            let term = self.quorum.confirm_leadership().await?;
            let image = self.quorum.image();
            let mut controller = QuorumController::new(self.config.clone(), image, now_ms);
            if let Some((id, incarnation)) = self.local_broker
                && controller.image().brokers.get(&id).is_some_and(|b| b.incarnation_id != incarnation)
            {
                controller.expire_session(id);
            }
            *active = Some((term, controller));
        }
        // Out of the cache while its records are in flight: if this future is dropped or
        // the append fails, the next request starts over from the committed image.
        let Some((term, mut controller)) = active.take() else {
            return Err(QuorumError::NotController { leader: self.quorum.leader() });
        };
        let out = request(&mut controller, now_ms);
        if let Some(e) = controller.take_failure() {
            return Err(QuorumError::Raft(format!("the controller built an inconsistent record: {e}")));
        }
        let offset =
            if out.records.is_empty() { controller.image().offset } else { self.quorum.append(out.records).await? };
        *active = Some((term, controller));
        Ok((out.reply, offset))
    }

    /// Fences brokers whose sessions expired; call it every few hundred milliseconds.
    pub async fn tick(&self) -> Result<(), QuorumError> {
        match self.run(|c, now| ControllerOutput { records: c.tick(now), reply: () }).await {
            Ok(_) | Err(QuorumError::NotController { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// How often the controller looks for expired broker sessions: a dead broker is fenced,
/// and its partitions get new leaders, at most this long after its session ran out.
pub const SESSION_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

impl ControllerService {
    /// Fences expired sessions every [`SESSION_CHECK_INTERVAL`] while this node leads,
    /// until `stop`.
    pub async fn run_session_checks(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(SESSION_CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Without a quorum a fencing record never commits: the tick gives up (the controller
        // starts over from the committed image) rather than wait for ever.
        let patience = std::time::Duration::from_millis(self.config.session_timeout_ms.max(1) as u64);
        loop {
            tokio::select! {
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
                _ = ticks.tick() => {}
            }
            let ticked = tokio::select! {
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return } else { continue },
                ticked = tokio::time::timeout(patience, self.tick()) => ticked,
            };
            match ticked {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "controller tick failed"),
                Err(_) => tracing::warn!(?patience, "controller tick could not commit: no quorum?"),
            }
        }
    }
}

impl ControllerHandler for ControllerService {
    fn handle(&self, request: ControllerRequest) -> ControllerFuture<'_> {
        Box::pin(ControllerService::handle(self, request))
    }
}
