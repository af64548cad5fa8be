//! What an application checks and creates before its threads start:
//!
//! - every source topic the topology names exists;
//! - repartition topics (`<application.id>-<name>-repartition`) exist, with the partition
//!   count asked for or, if none was, as many as the source topics upstream of them have;
//! - the topics of each sub-topology that keeps state are co-partitioned (equal partition
//!   counts), or a key could land in two tasks;
//! - changelog topics (`<application.id>-<store>-changelog`) exist, compacted, with one
//!   partition per task of the sub-topology that owns the store.
//!
//! An internal topic that exists with another partition count is an error: its data would
//! no longer line up with the tasks.

use std::collections::BTreeMap;

use freshet_log::client::{AdminClient, NewTopic};

use crate::config::StreamsConfig;
use crate::error::{Result, StreamsError};
use crate::topology::{NodeKind, Subtopology, TopicRef, Topology};

/// Topic -> partition count, of what exists and what is about to.
type Counts = BTreeMap<String, i32>;

/// The repartition topics the sinks of `sub` write.
fn repartition_sinks(topology: &Topology, sub: &Subtopology) -> Vec<String> {
    sub.nodes
        .iter()
        .filter_map(|&id| match &topology.nodes[id].kind {
            NodeKind::Sink { topic: Some(TopicRef::Internal(name)) } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Checks the topology against the cluster and creates its internal topics. Returns the
/// partition count of each sub-topology (its number of tasks).
pub(crate) async fn prepare(
    topology: &Topology,
    config: &StreamsConfig,
    admin: &AdminClient,
) -> Result<BTreeMap<u32, i32>> {
    let app = config.application_id.as_str();
    let mut counts: Counts =
        admin.list_topics(false).await?.into_iter().map(|t| (t.name, t.partitions.len() as i32)).collect();
    for sub in &topology.subtopologies {
        for &source in &sub.sources {
            let node = &topology.nodes[source];
            let NodeKind::Source { topics, pattern, .. } = &node.kind else { continue };
            for topic in topics {
                if let TopicRef::External(t) = topic
                    && !counts.contains_key(t)
                {
                    return Err(StreamsError::Topology(format!(
                        "source topic '{t}' of operator {} does not exist; create it before starting the application",
                        node.name
                    )));
                }
            }
            if let Some(p) = pattern
                && !counts.keys().any(|t| sub.reads(t, app, &topology.nodes))
            {
                tracing::warn!(operator = %node.name, pattern = %p, "no topic matches the source pattern yet");
            }
        }
    }

    // Repartition topics: the partition count asked for, or that of the sources upstream,
    // which may themselves be repartition topics (resolved until nothing changes).
    let existing = counts.clone();
    let mut wanted: BTreeMap<String, i32> = BTreeMap::new();
    loop {
        let mut changed = false;
        for sub in &topology.subtopologies {
            let upstream =
                topology.topics_read(sub, app, counts.keys()).iter().filter_map(|t| counts.get(t)).max().copied();
            for name in repartition_sinks(topology, sub) {
                let topic = TopicRef::Internal(name.clone()).resolve(app);
                if wanted.contains_key(&topic) {
                    continue;
                }
                let asked = topology.repartition_topics.get(&name).and_then(|r| r.partitions);
                if let Some(n) = asked.or(upstream) {
                    wanted.insert(topic.clone(), n);
                    changed = true;
                    counts.entry(topic).or_insert(n);
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (topic, n) in &wanted {
        ensure_topic(admin, config, topic, *n, &BTreeMap::new(), &existing, false).await?;
    }

    // Co-partitioning, and the number of tasks of each sub-topology.
    let mut tasks = BTreeMap::new();
    for sub in &topology.subtopologies {
        let read = topology.topics_read(sub, app, counts.keys());
        let per_topic: Vec<(String, i32)> = read.iter().map(|t| (t.clone(), counts[t])).collect();
        if !sub.stores.is_empty() && per_topic.windows(2).any(|w| w[0].1 != w[1].1) {
            let operators: Vec<&str> = sub.sources.iter().map(|&s| topology.nodes[s].name.as_str()).collect();
            let listed: Vec<String> = per_topic.iter().map(|(t, n)| format!("{t} ({n} partitions)")).collect();
            return Err(StreamsError::Topology(format!(
                "the sources {} feed store(s) {} and must be co-partitioned, but their topics differ: {}",
                operators.join(", "),
                sub.stores.join(", "),
                listed.join(", ")
            )));
        }
        if let Some(n) = per_topic.iter().map(|(_, n)| *n).max() {
            tasks.insert(sub.id, n);
        }
    }

    // Changelogs: one partition per task of the store's sub-topology.
    for (store, topic) in topology.changelogs(app) {
        let Some(sub) = topology.subtopologies.iter().find(|s| s.stores.contains(&store)) else { continue };
        let Some(&n) = tasks.get(&sub.id) else { continue };
        let extra = &topology.stores[&store].changelog_config;
        ensure_topic(admin, config, &topic, n, extra, &existing, true).await?;
    }
    Ok(tasks)
}

/// Creates `topic` with `partitions`, or checks that it has them.
async fn ensure_topic(
    admin: &AdminClient,
    config: &StreamsConfig,
    topic: &str,
    partitions: i32,
    extra: &BTreeMap<String, String>,
    existing: &Counts,
    compacted: bool,
) -> Result<()> {
    if let Some(&have) = existing.get(topic) {
        if have != partitions {
            return Err(StreamsError::Topology(format!(
                "internal topic {topic} has {have} partitions but the application needs {partitions}; \
                 delete it (and reset the application) or restore the source topics' partition counts"
            )));
        }
        return Ok(());
    }
    let mut new = NewTopic::new(topic, partitions).replication_factor(config.replication_factor);
    if compacted {
        new = new.config("cleanup.policy", "compact");
    }
    for (k, v) in extra {
        new = new.config(k.clone(), v.clone());
    }
    match admin.create_topic(new).await {
        Ok(()) => {
            tracing::info!(topic, partitions, "created internal topic");
            Ok(())
        }
        // Another instance created it first.
        Err(e) if e.code() == Some(freshet_log::codes::TOPIC_ALREADY_EXISTS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
