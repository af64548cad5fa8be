//! One partition's next state, given the ISR the controller wants for it: who leads, and
//! which replicas stay eligible to lead (Kafka's PartitionChangeBuilder).
//!
//! Leaders come from the ISR, in replica order, among brokers that are unfenced and not
//! shutting down. KIP-966's eligible leader replicas (ELR) keep a partition electable when
//! the ISR falls below `min.insync.replicas`: the replicas that leave then are known to
//! hold everything below the high watermark (which does not advance while the ISR is that
//! small), so one of them may lead when the ISR is empty. A replica that restarted after an
//! unclean shutdown may have lost unflushed data and is removed from both lists.

use super::image::PartitionRegistration;
use super::records::{NO_LEADER, PartitionChangeRecord};
use uuid::Uuid;

/// How the controller wants a partition to change.
#[derive(Debug)]
pub(crate) struct PartitionChange<'a> {
    pub topic_id: Uuid,
    pub partition: i32,
    pub current: &'a PartitionRegistration,
    /// The ISR wanted; the leader is elected from it.
    pub target_isr: Vec<i32>,
    /// Replicas to drop from the ELR (unclean shutdown).
    pub remove_from_elr: Vec<i32>,
    /// `min.insync.replicas`, at most the replica count.
    pub min_isr: usize,
    /// `unclean.leader.election.enable`.
    pub unclean: bool,
}

impl PartitionChange<'_> {
    /// The record that makes the change, or `None` when nothing would change.
    /// `eligible` says whether a broker may lead or join the ISR.
    pub fn build(self, eligible: impl Fn(i32) -> bool) -> Option<PartitionChangeRecord> {
        let current = self.current;
        let mut isr: Vec<i32> = Vec::new();
        for r in &self.target_isr {
            if current.replicas.contains(r) && !isr.contains(r) {
                isr.push(*r);
            }
        }
        let mut elr = self.next_elr(&isr);
        let leader = if current.has_leader() && isr.contains(&current.leader) && eligible(current.leader) {
            current.leader
        } else if let Some(l) = current.replicas.iter().copied().find(|r| isr.contains(r) && eligible(*r)) {
            l
        } else if let Some(l) = current.replicas.iter().copied().find(|r| elr.contains(r) && eligible(*r)) {
            isr = vec![l];
            elr.retain(|r| *r != l);
            l
        } else if let Some(l) = current.replicas.iter().copied().find(|r| self.unclean && eligible(*r)) {
            tracing::warn!(topic_id = %self.topic_id, partition = self.partition, leader = l, "unclean leader election");
            isr = vec![l];
            elr.clear();
            l
        } else {
            NO_LEADER
        };
        if isr.len() >= self.min_isr {
            elr.clear();
        }
        let change = PartitionChangeRecord {
            isr: (isr != current.isr).then_some(isr),
            elr: (elr != current.elr).then_some(elr),
            leader: (leader != current.leader).then_some(leader),
            ..PartitionChangeRecord::new(self.topic_id, self.partition)
        };
        (!change.is_empty()).then_some(change)
    }

    /// Replicas that leave the ISR while it is below `min.insync.replicas` join the ELR.
    fn next_elr(&self, isr: &[i32]) -> Vec<i32> {
        let current = self.current;
        if isr.len() >= self.min_isr {
            return Vec::new();
        }
        let mut elr = current.elr.clone();
        for r in &current.isr {
            if !isr.contains(r) && !elr.contains(r) {
                elr.push(*r);
            }
        }
        elr.retain(|r| !isr.contains(r) && !self.remove_from_elr.contains(r) && current.replicas.contains(r));
        elr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(replicas: &[i32], isr: &[i32], elr: &[i32], leader: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            elr: elr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 7,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    fn change<'a>(current: &'a PartitionRegistration, target_isr: &[i32], min_isr: usize) -> PartitionChange<'a> {
        PartitionChange {
            topic_id: Uuid::nil(),
            partition: 0,
            current,
            target_isr: target_isr.to_vec(),
            remove_from_elr: Vec::new(),
            min_isr,
            unclean: false,
        }
    }

    #[test]
    fn a_fenced_leader_is_replaced_by_the_next_in_sync_replica_in_replica_order() {
        let current = registration(&[1, 2, 3], &[1, 3, 2], &[], 1);
        let record = change(&current, &[3, 2], 2).build(|b| b != 1).unwrap();
        assert_eq!(record.leader, Some(2));
        assert_eq!(record.isr, Some(vec![3, 2]));
        assert_eq!(record.elr, None);
        let next = current.merge(&record);
        assert_eq!((next.leader_epoch, next.partition_epoch), (4, 8));
    }

    #[test]
    fn replicas_leaving_an_isr_below_min_isr_stay_electable() {
        let current = registration(&[1, 2, 3], &[1, 2], &[], 1);
        let record = change(&current, &[2], 2).build(|b| b != 1).unwrap();
        assert_eq!((record.leader, record.elr.clone()), (Some(2), Some(vec![1])));
        let next = current.merge(&record);

        // The last in-sync replica is fenced too: the ISR empties and nobody leads.
        let record = change(&next, &[], 2).build(|_| false).unwrap();
        let next = next.merge(&record);
        assert_eq!((next.leader, next.isr.clone(), next.elr.clone()), (NO_LEADER, vec![], vec![1, 2]));

        // Broker 1 comes back: it leads from the ELR, and broker 2 stays eligible.
        let record = change(&next, &next.isr.clone(), 2).build(|b| b == 1).unwrap();
        let next = next.merge(&record);
        assert_eq!((next.leader, next.isr.clone(), next.elr.clone()), (1, vec![1], vec![2]));
    }

    #[test]
    fn an_unclean_shutdown_removes_the_replica_from_the_elr() {
        let current = registration(&[1, 2, 3], &[], &[1, 2], NO_LEADER);
        let mut wanted = change(&current, &[], 2);
        wanted.remove_from_elr = vec![1];
        let record = wanted.build(|_| true).unwrap();
        let next = current.merge(&record);
        assert_eq!((next.leader, next.isr, next.elr), (2, vec![2], vec![]));
    }

    #[test]
    fn unclean_election_is_off_unless_asked_for() {
        let current = registration(&[1, 2, 3], &[1], &[], 1);
        assert_eq!(change(&current, &[], 1).build(|b| b == 3).unwrap().leader, Some(NO_LEADER));
        let mut unclean = change(&current, &[], 1);
        unclean.unclean = true;
        let next = current.merge(&unclean.build(|b| b == 3).unwrap());
        assert_eq!((next.leader, next.isr, next.elr), (3, vec![3], vec![]));
    }

    #[test]
    fn no_change_gives_no_record() {
        let current = registration(&[1, 2, 3], &[1, 2, 3], &[], 1);
        assert_eq!(change(&current, &[1, 2, 3], 2).build(|_| true), None);
    }
}
