//! The broker's way to the active controller (Kafka's NodeToControllerChannelManager):
//! a request runs on the controller in this process when it leads the quorum, and goes to
//! the leader's controller listener when another node does. NOT_CONTROLLER and lost
//! connections are retried, towards whichever node leads next, until the request's time
//! is up. An answer counts once this node's metadata image holds the records it wrote, so
//! that what the broker does next sees them.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::ApiError;
use crate::codes;
use crate::controller::quorum::network::ControllerClient;
use crate::controller::quorum::{MetadataQuorum, QuorumError};
use crate::controller::service::ControllerService;
use crate::controller::{ControllerError, ControllerReply, ControllerRequest, ControllerResponse};

/// How long to wait before asking again when no node leads or the leader moved.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Sends controller requests to the active controller.
#[derive(Debug)]
pub(crate) struct ControllerChannel {
    quorum: Arc<MetadataQuorum>,
    local: Option<Arc<ControllerService>>,
    client: ControllerClient,
    /// Who the last NOT_CONTROLLER answer named, and which voter to ask next when nobody
    /// is known to lead: an observer hears of the leader only once it replicates to it.
    hint: parking_lot::Mutex<(Option<u64>, usize)>,
    /// Voters that answered as nodes of another cluster. One is that voter's mistake; a
    /// majority is this node's.
    refused_by: parking_lot::Mutex<std::collections::BTreeSet<u64>>,
}

impl ControllerChannel {
    /// A channel through `quorum`'s view of who leads; `local` is this process's
    /// controller, if it runs one.
    pub fn new(quorum: Arc<MetadataQuorum>, local: Option<Arc<ControllerService>>) -> Self {
        let client = ControllerClient::new(quorum.source_ip(), quorum.cluster_id());
        Self { quorum, local, client, hint: parking_lot::Mutex::new((None, 0)), refused_by: Default::default() }
    }

    /// The controller in this process, if any.
    pub fn local(&self) -> Option<&Arc<ControllerService>> {
        self.local.as_ref()
    }

    /// Sends `request` to the active controller and waits, at most `timeout` in all, for
    /// its answer and for this node's image to hold what it wrote.
    pub async fn send(
        &self,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<Result<ControllerReply, ControllerError>, ApiError> {
        let deadline = Instant::now() + timeout;
        let name = request.name();
        let mut last_error = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(timed_out(name, timeout, last_error));
            }
            if let Some(conflict) = self.quorum.cluster_conflict() {
                return Err(ApiError::new(codes::INCONSISTENT_CLUSTER_ID, conflict));
            }
            match self.try_send(request.clone(), remaining).await {
                Ok(response) => {
                    self.wait_for_image(response.metadata_offset, deadline).await.map_err(|_| {
                        let reason = format!("this node's metadata did not reach offset {}", response.metadata_offset);
                        timed_out(name, timeout, Some(reason))
                    })?;
                    return Ok(response.reply);
                }
                Err(e @ (QuorumError::NotController { .. } | QuorumError::Raft(_))) => {
                    tracing::debug!(request = name, error = %e, "controller request not taken; retrying");
                    last_error = Some(e.to_string());
                }
                Err(e) => return Err(ApiError::new(e.code(), e.to_string())),
            }
            tokio::time::sleep(RETRY_BACKOFF.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    async fn try_send(&self, request: ControllerRequest, timeout: Duration) -> Result<ControllerResponse, QuorumError> {
        let guessed = || if self.quorum.is_voter() { None } else { self.guess_leader() };
        let Some(leader) = self.quorum.leader().or_else(guessed) else {
            return Err(QuorumError::NotController { leader: None });
        };
        if leader == self.quorum.node_id()
            && let Some(local) = &self.local
        {
            // Bounded: without a quorum, the append inside would wait forever. Dropping it
            // is safe; the controller then starts over from the committed image.
            return match tokio::time::timeout(timeout, local.handle(request)).await {
                Ok(answer) => answer,
                Err(_) => Err(QuorumError::Raft(format!("the local controller did not commit within {timeout:?}"))),
            };
        }
        let Some(addr) = self.quorum.voter_addresses().get(&leader).copied() else {
            return Err(QuorumError::NotController { leader: Some(leader) });
        };
        let answer = self.client.call(addr, request, timeout).await;
        match answer {
            Err(QuorumError::NotController { leader }) => {
                self.hint.lock().0 = leader;
                Err(QuorumError::NotController { leader })
            }
            Err(QuorumError::InconsistentClusterId(why)) => {
                let mut refused = self.refused_by.lock();
                refused.insert(leader);
                if refused.len() > self.quorum.voter_addresses().len() / 2 {
                    return Err(QuorumError::InconsistentClusterId(why));
                }
                Err(QuorumError::Raft(why)) // another voter may know this node
            }
            other => {
                if other.is_ok() {
                    self.refused_by.lock().clear();
                }
                other
            }
        }
    }

    /// Where to send a request when this node knows no leader: the one the last refusal
    /// named, else each voter in turn.
    fn guess_leader(&self) -> Option<u64> {
        let mut hint = self.hint.lock();
        if let Some(leader) = hint.0.take() {
            return Some(leader);
        }
        let voters = self.quorum.voter_addresses();
        let next = voters.keys().nth(hint.1 % voters.len().max(1)).copied();
        hint.1 += 1;
        next
    }

    async fn wait_for_image(&self, offset: i64, deadline: Instant) -> Result<(), ()> {
        let mut committed = self.quorum.committed_offset();
        let reached = committed.wait_for(|applied| *applied >= offset);
        match tokio::time::timeout_at(deadline, reached).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(()),
        }
    }
}

fn timed_out(name: &str, timeout: Duration, last_error: Option<String>) -> ApiError {
    let why = last_error.map_or_else(String::new, |e| format!(" (last: {e})"));
    ApiError::new(codes::REQUEST_TIMED_OUT, format!("{name} found no active controller within {timeout:?}{why}"))
}
