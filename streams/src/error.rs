//! Errors. Each says what failed and where: the operator, the store, the topic and
//! partition and offset of the record, or the configuration key.

use std::path::PathBuf;

use freshet_log::client::ClientError;
pub use freshet_log::client::serde::SerdeError;

/// A Streams result.
pub type Result<T, E = StreamsError> = std::result::Result<T, E>;

/// Why building, starting or running a Streams application failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    /// The topology is wrong: a missing store, a name used twice, topics that must be
    /// co-partitioned and are not. The message names the operator.
    #[error("invalid topology: {0}")]
    Topology(String),
    /// A configuration value is missing or wrong.
    #[error("config {key}={value:?}: {reason}")]
    Config {
        /// The property name, as Kafka Streams names it.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A record read from a topic could not be deserialized and the deserialization
    /// exception handler said to fail.
    #[error("cannot deserialize the record at {topic}-{partition}@{offset}: {source}")]
    Deserialization {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// What the serde said.
        #[source]
        source: SerdeError,
    },
    /// A value could not be serialized on its way to a topic or a store.
    #[error("operator {operator}: {source}")]
    Serialization {
        /// The sink or store operator.
        operator: String,
        /// What the serde said.
        #[source]
        source: SerdeError,
    },
    /// A state store failed or was used wrongly.
    #[error("state store '{store}': {reason}")]
    Store {
        /// The store name.
        store: String,
        /// What went wrong.
        reason: String,
    },
    /// A persistent store is still open in this process, under another task owner: a
    /// task that moved between two stream threads of one instance until the first lets
    /// it go. The new owner waits for it.
    #[error("store {store}: {} is still open in this process", path.display())]
    StoreLocked {
        /// The store.
        store: String,
        /// Its RocksDB directory.
        path: PathBuf,
    },
    /// The state directory could not be used.
    #[error("state directory {}: {reason}", path.display())]
    StateDir {
        /// The directory or file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A user processor or timestamp extractor failed.
    #[error("task {task}, operator {operator}: {reason}")]
    Processing {
        /// The task id (`<sub-topology>_<partition>`).
        task: String,
        /// The operator.
        operator: String,
        /// What went wrong.
        reason: String,
    },
    /// User code (a DSL function, a processor, a punctuator, a timestamp extractor)
    /// panicked. The thread that ran it cleans up as after any other error; the panic
    /// goes no further.
    #[error("task {task} panicked {during}: {message}")]
    Panicked {
        /// The task id (`<sub-topology>_<partition>`), or `-` outside any task.
        task: String,
        /// What the task was doing: which record it processed, which punctuation it ran.
        during: String,
        /// The panic's message.
        message: String,
    },
    /// The application is not in a state that allows the call.
    #[error("{0}")]
    IllegalState(String),
    /// Talking to the brokers failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl StreamsError {
    pub(crate) fn store(store: &str, reason: impl std::fmt::Display) -> Self {
        StreamsError::Store { store: store.to_string(), reason: reason.to_string() }
    }

    pub(crate) fn config(key: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        StreamsError::Config { key: key.to_string(), value: value.into(), reason: reason.into() }
    }

    pub(crate) fn state_dir(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        StreamsError::StateDir { path: path.into(), reason: reason.to_string() }
    }

    /// A panic caught while `task` was doing `during`. User code runs with the thread's
    /// state borrowed; after a panic the thread treats it as after any other error
    /// (closes its tasks without committing, wipes their checkpoints), which is why the
    /// call sites may assert unwind safety.
    pub(crate) fn panicked(task: impl std::fmt::Display, during: String, payload: &(dyn std::any::Any + Send)) -> Self {
        let message = match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
            (Some(s), _) => (*s).to_string(),
            (None, Some(s)) => s.clone(),
            (None, None) => "a panic without a message".to_string(),
        };
        StreamsError::Panicked { task: task.to_string(), during, message }
    }
}
