//! The numbered records that the cluster tests write to the topic `orders` (`v0`, `v1`,
//! ...) and read back from its partition 0.

use std::time::{Duration, Instant};

use freshet_log::TopicPartition;
use freshet_log::client::{Consumer, ConsumerConfig, ConsumerRecord, Producer, ProducerConfig, ProducerRecord};

pub const TOPIC: &str = "orders";
const WAIT: Duration = Duration::from_secs(60);

/// Writes `k{i}`/`v{i}` for `i` in `from..to` with `acks=all`, each one acknowledged.
pub async fn produce(bootstrap: &str, from: usize, to: usize) {
    let mut config = ProducerConfig::new(bootstrap);
    config.set_all([("acks", "all"), ("linger.ms", "5")]).unwrap();
    let producer = Producer::connect(config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in from..to {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        let record = ProducerRecord::new(TOPIC).key(&key).value(&value);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

/// The values of partition 0 from the start: at least `n`, and whatever follows them
/// within half a second (a record there would be one too many).
pub async fn consume_all(bootstrap: &str, n: usize) -> Vec<String> {
    let mut config = ConsumerConfig::new(bootstrap);
    config.set_all([("auto.offset.reset", "earliest"), ("fetch.max.wait.ms", "100")]).unwrap();
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.assign(&[TopicPartition::new(TOPIC, 0)]).await.unwrap();
    let deadline = Instant::now() + WAIT;
    let text = |record: ConsumerRecord| String::from_utf8(record.value.unwrap().to_vec()).unwrap();
    let mut values = Vec::new();
    while values.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} records arrived", values.len());
        values.extend(consumer.poll(Duration::from_millis(200)).await.unwrap().into_iter().map(text));
    }
    values.extend(consumer.poll(Duration::from_millis(500)).await.unwrap().into_iter().map(text));
    values
}
