//! The follower's side of a replica fetch, without I/O: where to fetch from, and where to
//! truncate when the leader says the logs diverged (KIP-320's DivergingEpoch, computed as
//! Kafka's fetcher does after KIP-101 and KIP-279).

use crate::storage::{EpochHistory, UNDEFINED_EPOCH};

/// Where a follower's next fetch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    /// The follower's log end offset.
    pub fetch_offset: i64,
    /// The epoch of its last batch.
    pub last_fetched_epoch: Option<i32>,
}

/// The next fetch position of a follower.
pub fn fetch_position(log_end_offset: i64, epochs: &EpochHistory) -> FetchPosition {
    FetchPosition { fetch_offset: log_end_offset, last_fetched_epoch: epochs.latest_epoch() }
}

/// Where to truncate after the leader answered `DivergingEpoch(epoch, end_offset)`.
///
/// When the follower knows the leader's epoch, both logs agree up to the smaller of the two
/// ends of it. When it does not, it truncates to the end of its own largest epoch below
/// that one and asks again; each round moves back at least one epoch. When the leader knows
/// no epoch at all, the follower keeps only what both sides can hold: its high watermark,
/// at most the leader's log end.
pub fn truncation_offset(
    diverging_epoch: i32,
    leader_end_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    epochs: &EpochHistory,
) -> i64 {
    if diverging_epoch == UNDEFINED_EPOCH {
        return high_watermark.min(log_end_offset).min(leader_end_offset.max(0));
    }
    let (epoch, end) = epochs.end_offset_for(diverging_epoch, log_end_offset);
    if epoch == UNDEFINED_EPOCH {
        return leader_end_offset.min(log_end_offset);
    }
    if epoch == diverging_epoch { leader_end_offset.min(end) } else { end.min(log_end_offset) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entries: &[(i32, i64)]) -> EpochHistory {
        let mut h = EpochHistory::new();
        for (epoch, start) in entries {
            h.assign(*epoch, *start);
        }
        h
    }

    #[test]
    fn a_follower_truncates_where_the_common_epoch_ends() {
        // Follower: epoch 1 from 0, epoch 2 from 10, log end 15. The leader never saw
        // epoch 2: its epoch 1 ran to 12, then epoch 3.
        let follower = history(&[(1, 0), (2, 10)]);
        let leader = history(&[(1, 0), (3, 12)]);
        let (epoch, end) = leader.end_offset_for(2, 20);
        assert_eq!((epoch, end), (1, 12));
        assert_eq!(truncation_offset(epoch, end, 15, 8, &follower), 10);
    }

    #[test]
    fn an_unknown_epoch_makes_the_follower_step_back_one_epoch_at_a_time() {
        let follower = history(&[(1, 0), (4, 10)]);
        // The leader answers epoch 3, which the follower never had: back to the end of
        // epoch 1, then ask again.
        assert_eq!(truncation_offset(3, 14, 18, 5, &follower), 10);
    }

    #[test]
    fn a_leader_without_epochs_leaves_the_high_watermark() {
        let follower = history(&[(1, 0)]);
        assert_eq!(truncation_offset(UNDEFINED_EPOCH, 3, 9, 5, &follower), 3);
        assert_eq!(truncation_offset(UNDEFINED_EPOCH, 7, 9, 5, &follower), 5);
    }
}
