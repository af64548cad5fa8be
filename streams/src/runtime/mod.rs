//! The application runtime: what runs a topology against a Kafka cluster. So far, the
//! task assignment the group leader computes ([`assignor`]); the stream threads, the
//! restoration of stores from their changelogs, checkpoints at commits and interactive
//! queries build on it.

pub(crate) mod assignor;
