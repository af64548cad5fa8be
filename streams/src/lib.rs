//! Freshet Streams: stream processing for Rust applications, as Kafka Streams is for Java.
//!
//! An application describes its processing with a typed DSL ([`StreamsBuilder`],
//! [`KStream`], [`KTable`]) or the Processor API ([`processor::Processor`]). The topology
//! is cut into sub-topologies at repartition topics, and each partition of a sub-topology
//! is a task. Instances of one application share the tasks through a consumer group. State
//! lives in stores (RocksDB or memory) whose writes are logged to compacted changelog
//! topics, so a task and its state can move to another instance.
//!
//! ```
//! use freshet_streams::serde::Serdes;
//! use freshet_streams::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, StreamsConfig, TopologyTestDriver};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("lines", Consumed::with(Serdes::optional(Serdes::string()), Serdes::string()))
//!     .flat_map_values(|line: String| line.to_lowercase().split_whitespace().map(str::to_string).collect::<Vec<_>>())
//!     .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
//!     .count(Materialized::as_("counts"))
//!     .to_stream()
//!     .to("word-counts", Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
//!
//! let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("wordcount", "unused:9092")).unwrap();
//! let lines = driver.input_topic("lines", Serdes::optional(Serdes::string()), Serdes::string());
//! let counts = driver.output_topic("word-counts", Serdes::string(), Serdes::optional(Serdes::i64()));
//! lines.pipe_input(None, "the cat and the hat".to_string()).unwrap();
//! let counts = counts.read_key_values_to_map().unwrap();
//! assert_eq!(counts["the"], Some(2));
//! assert_eq!(counts["hat"], Some(1));
//! ```

mod config;
mod dsl;
mod error;
pub mod processor;
mod record;
mod runtime;
pub mod serde;
pub mod state;
mod task;
mod test_driver;
mod topology;

pub use config::{
    DeserializationExceptionHandler, DeserializationHandler, DeserializationResponse, LogAndContinue, LogAndFail,
    ProcessingGuarantee, StreamsConfig,
};
pub use dsl::{
    BranchedKStream, Consumed, Data, GlobalKTable, Grouped, KGroupedStream, KGroupedTable, KStream, KTable,
    Materialized, NoSerde, Produced, Repartitioned, StreamsBuilder,
};
pub use error::{Result, StreamsError};
pub use processor::nodes::{RecordTimestamp, TimestampExtractor, WallclockTimestamp};
pub use record::{Change, Headers, Record, RecordContext, TaskId};
pub use runtime::{HostInfo, KafkaStreams, KeyQueryMetadata, State, StreamsMetadata, ThreadFailureResponse};
pub use task::context::TaskMetrics;
pub use test_driver::{TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use topology::Topology;
