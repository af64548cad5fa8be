//! The invariants, checked after every step of the simulation:
//! - at most one leader per partition per leader epoch;
//! - a leader's high watermark never moves backwards within its term, and never passes its
//!   log end;
//! - what any leader exposes below its high watermark (what consumers may read) agrees with
//!   everything exposed before: nothing read is ever replaced;
//! - every write acknowledged under `acks=all` lies in that exposed prefix;
//! - the logs of the live ISR and ELR members agree with the leader up to its high
//!   watermark.

use std::collections::BTreeMap;

use freshet_log::controller::ClusterImage;

use super::Key;
use super::broker::SimBroker;
use super::log::{Entry, SimLog};

#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<(Key, i32), i32>,
    high_watermarks: BTreeMap<(i32, u64, Key, i32), i64>,
    /// The longest prefix any leader exposed, per partition.
    pub exposed: BTreeMap<Key, Vec<Entry>>,
    /// How far each (broker, partition) log has been compared with `exposed`.
    verified: BTreeMap<(i32, Key), usize>,
    pub acked: BTreeMap<Key, Vec<(i64, u64)>>,
    pub violations: Vec<String>,
    /// Notable events for the trace of a failing seed.
    pub notes: Vec<String>,
}

impl Checker {
    fn fail(&mut self, what: String) {
        if self.violations.len() < 16 {
            self.violations.push(what);
        }
    }

    pub fn became_leader(&mut self, broker: i32, key: Key, epoch: i32) {
        self.notes.push(format!("broker {broker} leads partition {} in epoch {epoch}", key.1));
        if let Some(other) = self.leaders.insert((key, epoch), broker)
            && other != broker
        {
            self.fail(format!("partition {}: brokers {other} and {broker} both led epoch {epoch}", key.1));
        }
    }

    pub fn truncated(&mut self, broker: i32, key: Key, end: i64) {
        self.notes.push(format!("broker {broker} truncates partition {} to {end}", key.1));
        let v = self.verified.entry((broker, key)).or_default();
        *v = (*v).min(end as usize);
    }

    pub fn crashed(&mut self, broker: &SimBroker) {
        for (key, log) in &broker.logs {
            self.truncated(broker.id, *key, log.end());
        }
    }

    /// Compares `log[..upto]` with the exposed prefix; a leader's log extends it.
    fn verify(&mut self, broker: i32, key: Key, log: &SimLog, upto: usize, leader: bool) {
        let exposed = self.exposed.entry(key).or_default();
        let from = *self.verified.get(&(broker, key)).unwrap_or(&0);
        if log.entries.len() < upto {
            let what = format!("partition {}: broker {broker} has {} entries, below {upto}", key.1, log.entries.len());
            return self.fail(what);
        }
        let mut failure = None;
        for i in from.min(upto)..upto {
            match exposed.get(i) {
                Some(e) if *e == log.entries[i] => {}
                Some(e) => {
                    failure = Some(format!(
                        "partition {}: broker {broker} has {:?} at {i}, exposed was {e:?}",
                        key.1, log.entries[i]
                    ));
                    break;
                }
                None if leader => exposed.push(log.entries[i]),
                None => {
                    failure =
                        Some(format!("partition {}: broker {broker} compared beyond the exposed prefix at {i}", key.1));
                    break;
                }
            }
        }
        match failure {
            Some(f) => self.fail(f),
            None => {
                let v = self.verified.entry((broker, key)).or_default();
                *v = (*v).max(upto);
            }
        }
    }

    /// Every partition this broker leads: high watermark rules and exposure.
    pub fn observe_leaders(&mut self, broker: &SimBroker) {
        if !broker.up {
            return;
        }
        for (key, state) in &broker.states {
            if !state.is_leader() {
                continue;
            }
            let Some(log) = broker.logs.get(key) else { continue };
            let hw = state.high_watermark();
            if hw > log.end() {
                self.fail(format!(
                    "partition {}: broker {} has high watermark {hw} above log end {}",
                    key.1,
                    broker.id,
                    log.end()
                ));
            }
            let term = (broker.id, broker.incarnation, *key, state.leader_epoch());
            let last = self.high_watermarks.insert(term, hw);
            if last.is_some_and(|l| l > hw) {
                self.fail(format!(
                    "partition {}: broker {}'s high watermark went back from {last:?} to {hw}",
                    key.1, broker.id
                ));
            }
            self.verify(broker.id, *key, log, hw.max(0) as usize, true);
        }
    }

    pub fn acknowledged(&mut self, key: Key, offset: i64, value: u64) {
        self.acked.entry(key).or_default().push((offset, value));
        let held = self.exposed.get(&key).and_then(|e| e.get(offset as usize)).map(|e| e.1);
        if held != Some(value) {
            self.fail(format!("partition {}: acknowledged {value} at {offset}, but exposed holds {held:?}", key.1));
        }
    }

    /// The committed leader's live ISR and ELR members hold what it exposes: the ELR's
    /// whole point (KIP-966) is that its members hold everything below the high watermark.
    pub fn check_isr(&mut self, image: &ClusterImage, brokers: &BTreeMap<i32, SimBroker>) {
        for topic in image.topics.values() {
            for (p, reg) in &topic.partitions {
                let key = (topic.id, *p);
                let Some(leader) = brokers.get(&reg.leader).filter(|b| b.up && b.is_active()) else { continue };
                let Some(state) =
                    leader.states.get(&key).filter(|s| s.is_leader() && s.leader_epoch() == reg.leader_epoch)
                else {
                    continue;
                };
                let hw = state.high_watermark().max(0) as usize;
                for m in reg.isr.iter().chain(&reg.elr) {
                    let Some(member) = brokers.get(m).filter(|b| b.id != leader.id && b.up) else { continue };
                    if member.broker_epoch.is_none() || member.broker_epoch != image.broker_epoch(*m) {
                        continue;
                    }
                    let empty = SimLog::default();
                    let log = member.logs.get(&key).unwrap_or(&empty);
                    self.verify(*m, key, log, hw, false);
                }
            }
        }
    }
}
