//! Long-polling fetches waiting for data (Kafka's fetch purgatory, keyed by partition).
//!
//! A fetch that found too little registers a [`Notify`] under every partition it reads,
//! then reads again and waits. An append wakes only the fetches registered under the
//! partition that grew; a wake that arrives between registering and waiting is kept by
//! the `Notify`, so none is missed. Registrations are dropped when they fire and, for
//! fetches that ended by timeout, the next time their partition is registered under.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::storage::TopicPartition;

#[derive(Debug, Default)]
pub(crate) struct FetchPurgatory {
    waiting: Mutex<HashMap<TopicPartition, Vec<Weak<Notify>>>>,
}

impl FetchPurgatory {
    /// Registers `waiter` under each of `partitions`.
    pub fn watch<'a>(&self, waiter: &Arc<Notify>, partitions: impl IntoIterator<Item = &'a TopicPartition>) {
        let mut waiting = self.waiting.lock();
        for tp in partitions {
            let list = waiting.entry(tp.clone()).or_default();
            list.retain(|w| w.strong_count() > 0 && !w.ptr_eq(&Arc::downgrade(waiter)));
            list.push(Arc::downgrade(waiter));
        }
    }

    /// Wakes the fetches waiting on `tp`.
    pub fn appended(&self, tp: &TopicPartition) {
        let woken = self.waiting.lock().remove(tp);
        for waiter in woken.into_iter().flatten().filter_map(|w| w.upgrade()) {
            waiter.notify_one();
        }
    }

    /// Partitions with registrations (for tests).
    #[cfg(test)]
    pub fn watched(&self) -> usize {
        self.waiting.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn an_append_wakes_only_the_fetches_of_its_partition() {
        let purgatory = FetchPurgatory::default();
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let on_a = Arc::new(Notify::new());
        let on_b = Arc::new(Notify::new());
        purgatory.watch(&on_a, [&a]);
        purgatory.watch(&on_b, [&b]);
        purgatory.appended(&a);
        tokio::time::timeout(Duration::from_secs(5), on_a.notified()).await.expect("the fetch on t-0 wakes");
        assert!(tokio::time::timeout(Duration::from_millis(50), on_b.notified()).await.is_err(), "t-1 did not grow");
        assert_eq!(purgatory.watched(), 1, "fired registrations are gone");
    }

    #[tokio::test]
    async fn a_wake_before_the_wait_is_kept_and_dead_waiters_are_pruned() {
        let purgatory = FetchPurgatory::default();
        let tp = TopicPartition::new("t", 0);
        let waiter = Arc::new(Notify::new());
        purgatory.watch(&waiter, [&tp]);
        purgatory.appended(&tp);
        tokio::time::timeout(Duration::from_secs(5), waiter.notified()).await.expect("the permit was kept");
        for _ in 0..100 {
            purgatory.watch(&Arc::new(Notify::new()), [&tp]);
        }
        purgatory.watch(&waiter, [&tp]);
        purgatory.watch(&waiter, [&tp]);
        assert_eq!(purgatory.waiting.lock()[&tp].len(), 1, "ended fetches and repeats leave no entries");
    }
}
