//! The application's group protocol: what each stream thread puts in its subscription, and
//! what the leader hands back, as Kafka Streams' `StreamsPartitionAssignor` does it.
//!
//! Every stream thread is one consumer-group member. Its subscription says which instance
//! (process) it belongs to, where that instance answers interactive queries, the tasks it
//! ran last and the tasks whose state the instance has on disk. The leader turns the
//! partition counts of the source topics into tasks, shares them out with
//! [`assign_tasks`] (sticky, state-aware, balanced), gives each member the partitions of
//! its tasks, and tells everyone which host runs which task (for key lookups).
//!
//! The user data is JSON with a version field, so that later versions can read it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use freshet_log::client::{ClientError, GroupAssignment, GroupAssignor, MemberSubscription, TopicPartition};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::assignor::{MemberInfo, assign_tasks};
use crate::record::TaskId;
use crate::state::checkpoint::CHECKPOINT_FILE;
use crate::topology::Topology;

/// The protocol name stream threads join under.
pub(crate) const PROTOCOL: &str = "stream";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct SubscriptionInfo {
    version: u32,
    process: String,
    endpoint: Option<String>,
    previous: Vec<String>,
    on_disk: Vec<String>,
}

/// What the leader tells a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AssignmentInfo {
    pub version: u32,
    /// The member's tasks.
    pub tasks: Vec<String>,
    /// `application.server` endpoint -> the tasks its instance runs.
    pub hosts: BTreeMap<String, Vec<String>>,
    /// Sub-topology -> its number of tasks (partitions).
    pub partitions: BTreeMap<u32, i32>,
}

impl AssignmentInfo {
    pub fn task_ids(&self) -> BTreeSet<TaskId> {
        self.tasks.iter().filter_map(|t| TaskId::parse(t)).collect()
    }
}

/// What a stream thread and its group assignor share.
#[derive(Debug, Default)]
pub(crate) struct ThreadLink {
    /// The tasks the thread runs (or ran last), for its next subscription.
    pub previous: Mutex<BTreeSet<TaskId>>,
    /// The assignment of the last generation the thread joined, not yet acted on.
    pub assignment: Mutex<Option<AssignmentInfo>>,
}

/// The application-wide view of the last assignment, for interactive-query routing.
#[derive(Debug, Default)]
pub(crate) struct ClusterView {
    pub hosts: BTreeMap<String, BTreeSet<TaskId>>,
    pub partitions: BTreeMap<u32, i32>,
}

/// One stream thread's assignor.
#[derive(Debug)]
pub(crate) struct StreamsAssignor {
    pub topology: Arc<Topology>,
    pub application_id: String,
    pub process: String,
    pub endpoint: Option<String>,
    /// `state.dir/<application.id>`, where task directories with checkpoints are.
    pub app_dir: PathBuf,
    pub thread: Arc<ThreadLink>,
    pub view: Arc<Mutex<ClusterView>>,
}

fn protocol_error(reason: String) -> ClientError {
    ClientError::Protocol { addr: String::new(), reason }
}

/// Tasks with a checkpoint under `app_dir`: their state is on disk.
pub(crate) fn tasks_on_disk(app_dir: &std::path::Path) -> BTreeSet<TaskId> {
    let Ok(entries) = std::fs::read_dir(app_dir) else { return BTreeSet::new() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(CHECKPOINT_FILE).exists())
        .filter_map(|e| e.file_name().to_str().and_then(TaskId::parse))
        .collect()
}

impl GroupAssignor for StreamsAssignor {
    fn name(&self) -> &str {
        PROTOCOL
    }

    fn subscription_user_data(&self) -> Bytes {
        let info = SubscriptionInfo {
            version: VERSION,
            process: self.process.clone(),
            endpoint: self.endpoint.clone(),
            previous: self.thread.previous.lock().iter().map(ToString::to_string).collect(),
            on_disk: tasks_on_disk(&self.app_dir).iter().map(ToString::to_string).collect(),
        };
        Bytes::from(serde_json::to_vec(&info).unwrap_or_default())
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, i32>,
    ) -> freshet_log::client::Result<BTreeMap<String, GroupAssignment>> {
        let mut infos = Vec::with_capacity(members.len());
        let mut endpoints = BTreeMap::new();
        for m in members {
            let info: SubscriptionInfo = serde_json::from_slice(&m.user_data).map_err(|e| {
                protocol_error(format!("member {} sent a subscription that is not a Streams one: {e}", m.member_id))
            })?;
            let parse = |list: &[String]| list.iter().filter_map(|t| TaskId::parse(t)).collect::<BTreeSet<_>>();
            infos.push(MemberInfo {
                member_id: m.member_id.clone(),
                process: info.process.clone(),
                previous: parse(&info.previous),
                on_disk: parse(&info.on_disk),
            });
            if let Some(endpoint) = info.endpoint {
                endpoints.insert(m.member_id.clone(), endpoint);
            }
        }
        let mut tasks = BTreeSet::new();
        let mut counts = BTreeMap::new();
        let mut topics = Vec::new();
        for sub in &self.topology.subtopologies {
            let read = self.topology.topics_read(sub, &self.application_id, partitions.keys());
            match read.iter().filter_map(|t| partitions.get(t)).max() {
                Some(&n) => {
                    counts.insert(sub.id, n);
                    tasks.extend((0..n).map(|p| TaskId::new(sub.id, p)));
                }
                None => {
                    tracing::warn!(subtopology = sub.id, "no source topic of the sub-topology exists; it gets no tasks")
                }
            }
            topics.push(read);
        }
        let by_member = assign_tasks(&infos, &tasks);
        let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (member, list) in &by_member {
            if let Some(endpoint) = endpoints.get(member) {
                hosts.entry(endpoint.clone()).or_default().extend(list.iter().map(ToString::to_string));
            }
        }
        let mut out = BTreeMap::new();
        for (member, list) in by_member {
            let mut assigned = Vec::new();
            for task in &list {
                for topic in &topics[task.subtopology as usize] {
                    if task.partition < partitions[topic] {
                        assigned.push(TopicPartition::new(topic.clone(), task.partition));
                    }
                }
            }
            let info = AssignmentInfo {
                version: VERSION,
                tasks: list.iter().map(ToString::to_string).collect(),
                hosts: hosts.clone(),
                partitions: counts.clone(),
            };
            let user_data = Bytes::from(serde_json::to_vec(&info).unwrap_or_default());
            out.insert(member, GroupAssignment { partitions: assigned, user_data });
        }
        Ok(out)
    }

    fn on_assignment(&self, assignment: &GroupAssignment, generation: i32) {
        let info: AssignmentInfo = match serde_json::from_slice(&assignment.user_data) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(generation, error = %e, "the group leader sent an assignment that is not a Streams one");
                AssignmentInfo::default()
            }
        };
        {
            let mut view = self.view.lock();
            view.hosts = info
                .hosts
                .iter()
                .map(|(host, tasks)| (host.clone(), tasks.iter().filter_map(|t| TaskId::parse(t)).collect()))
                .collect();
            view.partitions = info.partitions.clone();
        }
        *self.thread.assignment.lock() = Some(info);
    }
}
