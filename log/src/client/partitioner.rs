//! Kafka's default partitioner, byte-compatible with the Java client and with
//! librdkafka's `murmur2_random`: a keyed record goes to
//! `(murmur2(key) & 0x7fffffff) % partitions`; records without a key stick to one
//! partition per topic until a batch for it is sent, then move to another (KIP-480).

use std::collections::HashMap;

/// Kafka's 32-bit murmur2 of `data` (seed `0x9747b28c`), as `Utils.murmur2` returns it.
pub fn murmur2(data: &[u8]) -> i32 {
    murmur2::murmur2(data, murmur2::KAFKA_SEED) as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition of a keyed record among `partitions` (which must be positive).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    to_positive(murmur2(key)) % partitions.max(1)
}

/// Picks partitions: by key when there is one, else sticky per topic.
#[derive(Debug)]
pub struct DefaultPartitioner {
    sticky: HashMap<String, i32>,
    rng: u64,
}

impl Default for DefaultPartitioner {
    fn default() -> Self {
        Self::with_seed(uuid::Uuid::new_v4().as_u128() as u64)
    }
}

impl DefaultPartitioner {
    /// A partitioner whose sticky choices follow `seed` (for deterministic tests).
    pub fn with_seed(seed: u64) -> Self {
        Self { sticky: HashMap::new(), rng: seed | 1 }
    }

    /// The partition for a record of `topic`, which has `partitions` partitions.
    pub fn partition(&mut self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32 {
        if let Some(key) = key {
            return partition_for_key(key, partitions);
        }
        match self.sticky.get(topic) {
            Some(&p) if p < partitions => p,
            _ => self.move_on(topic, partitions, -1),
        }
    }

    /// A batch for `previous` was just closed: records without a key move to another
    /// partition (any other one, chosen at random), so load spreads over time.
    pub fn on_new_batch(&mut self, topic: &str, partitions: i32, previous: i32) -> i32 {
        if self.sticky.get(topic) == Some(&previous) { self.move_on(topic, partitions, previous) } else { previous }
    }

    fn move_on(&mut self, topic: &str, partitions: i32, avoid: i32) -> i32 {
        let partitions = partitions.max(1);
        let mut next = (self.next_random() % partitions as u64) as i32;
        if next == avoid && partitions > 1 {
            next = (next + 1 + (self.next_random() % (partitions as u64 - 1)) as i32) % partitions;
        }
        self.sticky.insert(topic.to_string(), next);
        next
    }

    /// xorshift64*: enough to spread partitions, no cryptographic claim.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_own_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2 and librdkafka's rdmurmur2.c.
        for (key, hash) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
            ("kafka", -798_503_068),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key}");
        }
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(partition_for_key(b"foobar", 7), to_positive(-790_332_482) % 7);
    }

    #[test]
    fn unkeyed_records_stick_until_a_batch_closes() {
        let mut p = DefaultPartitioner::with_seed(42);
        let first = p.partition("t", None, 6);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, 6), first);
        }
        let mut seen = std::collections::BTreeSet::from([first]);
        let mut current = first;
        for _ in 0..200 {
            let next = p.on_new_batch("t", 6, current);
            assert_ne!(next, current, "a closed batch moves the topic on");
            assert_eq!(p.partition("t", None, 6), next);
            seen.insert(next);
            current = next;
        }
        assert_eq!(seen.len(), 6, "every partition gets a turn");
        // A stale notification (another partition's batch) changes nothing.
        assert_eq!(p.on_new_batch("t", 6, (current + 1) % 6), (current + 1) % 6);
        assert_eq!(p.partition("t", None, 6), current);
        // Keys ignore stickiness; a single partition is the only choice.
        assert_eq!(p.partition("t", Some(b"foobar"), 6), partition_for_key(b"foobar", 6));
        let only = p.partition("one", None, 1);
        assert_eq!((only, p.on_new_batch("one", 1, only)), (0, 0));
    }
}
