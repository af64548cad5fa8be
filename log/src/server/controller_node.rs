//! A dedicated controller (`process.roles=controller`, KRaft's controller-only node): a
//! voter of the metadata quorum and, while it leads, the active controller. It holds no
//! partitions and has no listener for clients; brokers reach it on its controller
//! listener, which serves the quorum's RPCs and their controller requests alike.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::broker::{BrokerConfig, controller_config, prepare_data_dir, start_quorum};
use crate::controller::quorum::MetadataQuorum;
use crate::controller::quorum::network::ControllerHandler;
use crate::controller::service::ControllerService;
use crate::storage::error::{LogError, Result};
use crate::time::SystemClock;

/// A dedicated controller that is running. Dropping it without
/// [`RunningController::shutdown`] stops it like a crash.
#[derive(Debug)]
pub struct RunningController {
    service: Arc<ControllerService>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    session_checks: tokio::task::JoinHandle<()>,
}

impl RunningController {
    /// Formats the data directory if it is new (as a broker does), joins the quorum on the
    /// controller listener and serves controller requests there.
    pub async fn start(config: BrokerConfig) -> Result<Self> {
        config.validate()?;
        let meta = prepare_data_dir(&config)?;
        let addr = config.cluster.controller_listener().and_then(|l| l.bind_addr()).ok_or_else(|| {
            LogError::InvalidConfig {
                key: "listeners".into(),
                value: String::new(),
                reason: "a controller needs a controller listener with a host and port".into(),
            }
        })?;
        let quorum = Arc::new(start_quorum(&config, &meta.cluster_id).await?);
        let service =
            Arc::new(ControllerService::new(quorum.clone(), controller_config(&config), Arc::new(SystemClock)));
        let handler: Arc<dyn ControllerHandler> = service.clone();
        quorum.serve_controller(Arc::downgrade(&handler));
        let (stop, stopped) = watch::channel(false);
        let session_checks = tokio::spawn(service.clone().run_session_checks(stopped));
        tracing::info!(%addr, node_id = config.node_id, cluster_id = %meta.cluster_id, "controller listening");
        Ok(Self { service, addr, stop, session_checks })
    }

    /// Where it serves the quorum and controller requests.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its quorum member.
    pub fn quorum(&self) -> &Arc<MetadataQuorum> {
        self.service.quorum()
    }

    /// Stops the session checks and leaves the quorum; the others elect a new leader if
    /// this one led.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let _ = self.session_checks.await;
        self.service.quorum().shutdown().await;
        tracing::info!(addr = %self.addr, "controller stopped cleanly");
        Ok(())
    }
}
