//! The controller quorum as the simulation sees it: one active [`QuorumController`] whose
//! records commit at once (openraft's job, tested on its own), which can fail over. A new
//! active controller replays the committed log and gives every broker a fresh session.

use freshet_log::controller::{
    BrokerHeartbeat, ClusterImage, ControllerConfig, CreateTopic, MetadataRecord, QuorumController, RegisterBroker,
};
use uuid::Uuid;

use super::Msg;

/// Records per metadata fetch answer.
const METADATA_BATCH: usize = 64;

#[derive(Debug)]
pub struct SimController {
    config: ControllerConfig,
    pub qc: QuorumController,
    pub log: Vec<MetadataRecord>,
    pub down_until_ms: i64,
}

impl SimController {
    pub fn new(config: ControllerConfig) -> Self {
        let qc = QuorumController::new(config.clone(), ClusterImage::new(), 0);
        Self { config, qc, log: Vec::new(), down_until_ms: 0 }
    }

    pub fn is_up(&self, now_ms: i64) -> bool {
        now_ms >= self.down_until_ms
    }

    pub fn image(&self) -> &ClusterImage {
        self.qc.image()
    }

    /// The active controller goes away until `until_ms`; its successor takes over then.
    pub fn fail_over(&mut self, until_ms: i64) {
        self.down_until_ms = until_ms;
    }

    /// The successor becomes active over the committed log.
    pub fn take_over(&mut self, now_ms: i64) {
        let mut image = ClusterImage::new();
        for (offset, record) in self.log.iter().enumerate() {
            image.apply(offset as i64, record).expect("the committed log replays");
        }
        assert_eq!(&image, self.qc.image(), "replaying the log rebuilds the controller's image");
        self.qc = QuorumController::new(self.config.clone(), image, now_ms);
    }

    pub fn tick(&mut self, now_ms: i64) {
        let records = self.qc.tick(now_ms);
        self.log.extend(records);
        self.check();
    }

    /// Every record the controller built fit its own image.
    fn check(&mut self) {
        if let Some(e) = self.qc.take_failure() {
            panic!("the controller built an inconsistent record: {e}");
        }
    }

    pub fn create_topic(&mut self, name: &str, topic_id: Uuid, partitions: i32, rf: i16) -> bool {
        let req = CreateTopic {
            name: name.into(),
            topic_id,
            partitions: Some(partitions),
            replication_factor: Some(rf),
            configs: Vec::new(),
            assignments: Vec::new(),
        };
        let out = self.qc.create_topic(req);
        self.log.extend(out.records);
        out.reply.is_ok()
    }

    /// Answers one broker request.
    pub fn handle(&mut self, from: i32, msg: Msg, now_ms: i64) -> Option<Msg> {
        let reply = self.answer(from, msg, now_ms);
        self.check();
        reply
    }

    fn answer(&mut self, from: i32, msg: Msg, now_ms: i64) -> Option<Msg> {
        match msg {
            Msg::Register { incarnation, previous_epoch } => {
                let req = RegisterBroker {
                    broker_id: from,
                    incarnation_id: incarnation,
                    rack: None,
                    endpoints: Vec::new(),
                    previous_broker_epoch: previous_epoch,
                };
                let out = self.qc.register_broker(req, now_ms);
                self.log.extend(out.records);
                Some(Msg::RegisterReply { incarnation, result: out.reply.map_err(|e| e.code()) })
            }
            Msg::Heartbeat { broker_epoch, metadata_offset, want_shutdown } => {
                let req = BrokerHeartbeat { broker_id: from, broker_epoch, metadata_offset, want_shutdown };
                let out = self.qc.heartbeat(req, now_ms);
                self.log.extend(out.records);
                out.reply.ok().map(|r| Msg::HeartbeatReply { should_shut_down: r.should_shut_down })
            }
            Msg::Alter(req) => {
                let key = (req.topic_id, req.partition);
                let out = self.qc.alter_partition(&req);
                self.log.extend(out.records);
                Some(Msg::AlterReply { key, answer: out.reply.map_err(|e| e.code()) })
            }
            Msg::MetadataFetch { from: offset } => {
                let start = (offset.max(0) as usize).min(self.log.len());
                let end = (start + METADATA_BATCH).min(self.log.len());
                Some(Msg::Metadata { from: start as i64, records: self.log[start..end].to_vec() })
            }
            other => panic!("the controller got {other:?}"),
        }
    }
}
