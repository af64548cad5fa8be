//! The settings that place a node in a cluster, under Kafka's KRaft names: its roles, the
//! controller quorum's voters, its named listeners, its rack, and the replication defaults.
//! [`ClusterConfig::validate`] checks them together at start-up, with errors that name the
//! key, so that a node with a wrong voter list or listener never joins a cluster.
//!
//! ```
//! use freshet_log::broker::BrokerConfig;
//!
//! let mut config = BrokerConfig::default();
//! config.set("node.id", "2").unwrap();
//! config.set("listeners", "PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193").unwrap();
//! config.set("controller.quorum.voters", "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293").unwrap();
//! config.validate().unwrap();
//! assert_eq!(config.cluster.voters.len(), 3);
//!
//! config.set("controller.quorum.voters", "1@127.0.0.1:9093,3@127.0.0.1:9293").unwrap();
//! let err = config.validate().unwrap_err().to_string();
//! assert!(err.contains("controller.quorum.voters"), "{err}");
//! ```

use std::net::SocketAddr;

use super::config::{invalid, parse};
use crate::storage::error::Result;

/// What a node runs (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessRole {
    /// Serves clients and stores partitions.
    Broker,
    /// A voter of the controller quorum.
    Controller,
}

/// One `controller.quorum.voters` entry: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    /// The voter's `node.id`.
    pub id: i32,
    /// Host of its controller listener.
    pub host: String,
    /// Port of its controller listener.
    pub port: u16,
}

/// One `listeners` entry: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name (`PLAINTEXT`, `CONTROLLER`, ...).
    pub name: String,
    /// Host to bind (empty: every interface).
    pub host: String,
    /// Port to bind (0: any free port).
    pub port: u16,
}

impl Listener {
    /// The address to bind.
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        resolve(if self.host.is_empty() { "0.0.0.0" } else { &self.host }, self.port)
    }
}

/// The first address `host` resolves to, with `port`.
pub(crate) fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).ok().and_then(|mut a| a.next())
}

/// A node's place in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `process.roles`.
    pub roles: Vec<ProcessRole>,
    /// `controller.quorum.voters`; empty: a one-voter quorum inside this process.
    pub voters: Vec<QuorumVoter>,
    /// `controller.listener.names`.
    pub controller_listener_names: Vec<String>,
    /// `listeners`, every one.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`, by name.
    pub advertised_listeners: Vec<Listener>,
    /// `inter.broker.listener.name`.
    pub inter_broker_listener_name: String,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: i16,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.max.bytes`.
    pub replica_fetch_max_bytes: i32,
    /// `broker.session.timeout.ms`.
    pub broker_session_timeout_ms: i64,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval_ms: i64,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval_seconds: i64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            roles: vec![ProcessRole::Broker, ProcessRole::Controller],
            voters: Vec::new(),
            controller_listener_names: vec!["CONTROLLER".into()],
            listeners: vec![Listener { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 9092 }],
            advertised_listeners: Vec::new(),
            inter_broker_listener_name: "PLAINTEXT".into(),
            rack: None,
            default_replication_factor: 1,
            offsets_topic_replication_factor: 3,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_max_bytes: 1 << 20,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
        }
    }
}

/// Parses `NAME://host:port,...`. A bare `host:port` is a PLAINTEXT listener.
pub(crate) fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>> {
    let mut listeners: Vec<Listener> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, endpoint) = item.split_once("://").unwrap_or(("PLAINTEXT", item));
        let name = name.to_ascii_uppercase();
        if matches!(name.as_str(), "SSL" | "SASL_SSL" | "SASL_PLAINTEXT") {
            return Err(invalid(key, value, format!("{name}: only PLAINTEXT listeners are supported")));
        }
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, value, format!("{item}: expected NAME://host:port")))?;
        let port = port.parse().map_err(|_| invalid(key, value, format!("{item}: the port is not a number")))?;
        if listeners.iter().any(|l| l.name == name) {
            return Err(invalid(key, value, format!("listener {name} is named twice")));
        }
        let host = host.trim_matches(|c| c == '[' || c == ']').to_owned();
        listeners.push(Listener { name, host, port });
    }
    if listeners.is_empty() {
        return Err(invalid(key, value, "expected at least one NAME://host:port"));
    }
    Ok(listeners)
}

fn parse_voters(key: &str, value: &str) -> Result<Vec<QuorumVoter>> {
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || invalid(key, value, format!("{item}: expected id@host:port"));
        let (id, endpoint) = item.split_once('@').ok_or_else(bad)?;
        let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
        let voter = QuorumVoter {
            id: id.trim().parse().map_err(|_| bad())?,
            host: host.trim_matches(|c| c == '[' || c == ']').to_owned(),
            port: port.parse().map_err(|_| bad())?,
        };
        if voters.iter().any(|v| v.id == voter.id) {
            return Err(invalid(key, value, format!("voter {} is listed twice", voter.id)));
        }
        voters.push(voter);
    }
    Ok(voters)
}

fn parse_roles(key: &str, value: &str) -> Result<Vec<ProcessRole>> {
    let mut roles = Vec::new();
    for role in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let role = match role.to_ascii_lowercase().as_str() {
            "broker" => ProcessRole::Broker,
            "controller" => ProcessRole::Controller,
            other => {
                return Err(invalid(
                    key,
                    value,
                    format!("unknown role {other:?}: expected broker, controller or both"),
                ));
            }
        };
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(invalid(key, value, "expected broker, controller or broker,controller"));
    }
    Ok(roles)
}

fn at_least<T: PartialOrd + std::fmt::Display>(key: &str, value: &str, v: T, min: T) -> Result<T> {
    if v < min { Err(invalid(key, value, format!("must be at least {min}"))) } else { Ok(v) }
}

impl ClusterConfig {
    /// Sets one of the cluster keys; `Ok(false)` when `key` is not one of them.
    pub fn set(&mut self, key: &str, v: &str) -> Result<bool> {
        match key {
            "process.roles" => self.roles = parse_roles(key, v)?,
            "controller.quorum.voters" => self.voters = parse_voters(key, v)?,
            "controller.listener.names" => {
                self.controller_listener_names =
                    v.split(',').map(|s| s.trim().to_ascii_uppercase()).filter(|s| !s.is_empty()).collect();
                if self.controller_listener_names.is_empty() {
                    return Err(invalid(key, v, "expected at least one listener name"));
                }
            }
            "listeners" => self.listeners = parse_listeners(key, v)?,
            "advertised.listeners" => self.advertised_listeners = parse_listeners(key, v)?,
            "inter.broker.listener.name" => self.inter_broker_listener_name = v.trim().to_ascii_uppercase(),
            "broker.rack" => self.rack = Some(v.trim().to_owned()).filter(|r| !r.is_empty()),
            "default.replication.factor" => {
                self.default_replication_factor = at_least(key, v, parse(key, v)?, 1)?;
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = at_least(key, v, parse(key, v)?, 1)?;
            }
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = at_least(key, v, parse(key, v)?, 1)?,
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes = at_least(key, v, parse(key, v)?, 1)?,
            "broker.session.timeout.ms" => self.broker_session_timeout_ms = at_least(key, v, parse(key, v)?, 1)?,
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = at_least(key, v, parse(key, v)?, 1)?;
            }
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable = parse(key, v)?,
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds = at_least(key, v, parse(key, v)?, 1)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether this node has `role`.
    pub fn has_role(&self, role: ProcessRole) -> bool {
        self.roles.contains(&role)
    }

    /// The listeners Kafka clients and other brokers connect to.
    pub fn broker_listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners.iter().filter(|l| !self.controller_listener_names.contains(&l.name))
    }

    /// The IP of the inter-broker listener, when it names one (not a host name or the
    /// wildcard): replica fetches leave from it.
    pub fn inter_broker_ip(&self) -> Option<std::net::IpAddr> {
        let listener = self.listeners.iter().find(|l| l.name == self.inter_broker_listener_name)?;
        listener.host.parse::<std::net::IpAddr>().ok().filter(|ip| !ip.is_unspecified())
    }

    /// The listener the controller quorum uses on this node.
    pub fn controller_listener(&self) -> Option<&Listener> {
        self.listeners.iter().find(|l| self.controller_listener_names.contains(&l.name))
    }

    /// Where other nodes reach this node's controller listener: its `advertised.listeners`
    /// entry when it has one (behind a proxy or NAT, as Kafka 3.9 allows), else the
    /// listener itself.
    pub fn advertised_controller_listener(&self) -> Option<&Listener> {
        let own = self.controller_listener()?;
        self.advertised_listeners.iter().find(|a| a.name == own.name).or(Some(own))
    }

    /// A single node: the default, with the quorum inside the process.
    pub fn is_single_node(&self) -> bool {
        self.voters.is_empty()
    }

    /// The replicas `__consumer_offsets` gets: `offsets.topic.replication.factor`, except
    /// on a single node, which has one broker to place them on (Kafka's single-node
    /// configs set it to 1 for the same reason).
    pub fn offsets_replication_factor(&self) -> i16 {
        if self.is_single_node() { 1 } else { self.offsets_topic_replication_factor }
    }

    /// Checks the keys against each other for `node_id`; the error names the key at fault.
    pub fn validate(&self, node_id: i32) -> Result<()> {
        let names = self.controller_listener_names.join(",");
        if self.has_role(ProcessRole::Broker) {
            if self.broker_listeners().next().is_none() {
                return Err(invalid("listeners", &self.listeners_text(), "a broker needs a listener for clients"));
            }
            if !self.listeners.iter().any(|l| l.name == self.inter_broker_listener_name) {
                let reason = format!("names {}, which is not in listeners", self.inter_broker_listener_name);
                return Err(invalid("inter.broker.listener.name", &self.inter_broker_listener_name, reason));
            }
        }
        if self.voters.is_empty() {
            if !self.has_role(ProcessRole::Controller) {
                let reason = "a node without the controller role must be given the quorum's voters";
                return Err(invalid("controller.quorum.voters", "", reason));
            }
            return Ok(());
        }
        let voters = self.voters_text();
        match (self.has_role(ProcessRole::Controller), self.voters.iter().find(|v| v.id == node_id)) {
            (true, None) => {
                let reason = format!("this node (node.id={node_id}) has the controller role but is not a voter");
                Err(invalid("controller.quorum.voters", &voters, reason))
            }
            (true, Some(me)) => {
                let Some(own) = self.advertised_controller_listener() else {
                    let reason = format!("a controller needs a listener named in controller.listener.names ({names})");
                    return Err(invalid("listeners", &self.listeners_text(), reason));
                };
                let host_matches = own.host == me.host || own.host.is_empty() || own.host == "0.0.0.0";
                if own.port != me.port || !host_matches {
                    let reason = format!(
                        "gives node {node_id} the address {}:{}, but its controller listener {} is reached at {}:{}",
                        me.host, me.port, own.name, own.host, own.port
                    );
                    return Err(invalid("controller.quorum.voters", &voters, reason));
                }
                Ok(())
            }
            // Unlike Kafka's brokers, which fetch the metadata log from the controllers, a
            // broker-only node follows it as an openraft learner, which the active
            // controller replicates to: it needs an address to be reached on.
            (false, Some(_)) => {
                let reason = format!("node {node_id} is listed as a voter but does not have the controller role");
                Err(invalid("controller.quorum.voters", &voters, reason))
            }
            (false, None) if self.controller_listener().and_then(Listener::bind_addr).is_none() => {
                let reason = format!(
                    "a broker-only node receives the metadata log on a listener named in controller.listener.names \
                     ({names}), for example CONTROLLER://127.0.0.1:9093"
                );
                Err(invalid("listeners", &self.listeners_text(), reason))
            }
            (false, None) => Ok(()),
        }
    }

    fn listeners_text(&self) -> String {
        self.listeners.iter().map(|l| format!("{}://{}:{}", l.name, l.host, l.port)).collect::<Vec<_>>().join(",")
    }

    /// The cluster id a new data directory gets: derived from the voters in a cluster, so
    /// that every node formats itself alike; random on a single node.
    pub fn new_cluster_id(&self) -> String {
        if self.voters.is_empty() {
            return crate::storage::meta_properties::random_uuid();
        }
        let voters: Vec<String> = self.voters.iter().map(|v| format!("{}@{}:{}", v.id, v.host, v.port)).collect();
        crate::storage::meta_properties::cluster_id_for_voters(&voters)
    }

    fn voters_text(&self) -> String {
        self.voters.iter().map(|v| format!("{}@{}:{}", v.id, v.host, v.port)).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ClusterConfig {
        let mut c = ClusterConfig::default();
        for (k, v) in pairs {
            assert!(c.set(k, v).unwrap(), "{k} is a cluster key");
        }
        c
    }

    fn error(c: &ClusterConfig, node_id: i32) -> String {
        c.validate(node_id).unwrap_err().to_string()
    }

    #[test]
    fn the_default_is_a_complete_single_node() {
        let c = ClusterConfig::default();
        c.validate(1).unwrap();
        assert!(c.is_single_node() && c.has_role(ProcessRole::Broker) && c.has_role(ProcessRole::Controller));
    }

    #[test]
    fn three_combined_nodes_on_one_machine_validate() {
        let voters = "1@127.0.0.1:19093,2@127.0.0.1:29093,3@127.0.0.1:39093";
        for id in 1..=3 {
            let listeners = format!("PLAINTEXT://127.0.0.1:{id}9092,CONTROLLER://127.0.0.1:{id}9093");
            config(&[("listeners", &listeners), ("controller.quorum.voters", voters)]).validate(id).unwrap();
        }
        let broker_only = config(&[
            ("process.roles", "broker"),
            ("listeners", "PLAINTEXT://127.0.0.1:49092,CONTROLLER://127.0.0.1:49093"),
            ("controller.quorum.voters", voters),
        ]);
        broker_only.validate(4).unwrap();
        let deaf = config(&[
            ("process.roles", "broker"),
            ("listeners", "PLAINTEXT://127.0.0.1:49092"),
            ("controller.quorum.voters", voters),
        ]);
        assert!(error(&deaf, 4).contains("receives the metadata log"), "{}", error(&deaf, 4));
        let voting_broker = config(&[
            ("process.roles", "broker"),
            ("listeners", "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"),
            ("controller.quorum.voters", voters),
        ]);
        assert!(error(&voting_broker, 1).contains("controller role"), "{}", error(&voting_broker, 1));
    }

    #[test]
    fn controllers_behind_proxies_are_voters_at_their_advertised_address() {
        let voters = "1@127.0.2.1:19093,2@127.0.2.2:29093";
        let proxied = config(&[
            ("listeners", "PLAINTEXT://127.0.1.1:19092,CONTROLLER://127.0.1.1:19093"),
            ("advertised.listeners", "PLAINTEXT://127.0.2.1:19092,CONTROLLER://127.0.2.1:19093"),
            ("controller.quorum.voters", voters),
        ]);
        proxied.validate(1).unwrap();
        assert_eq!(proxied.advertised_controller_listener().unwrap().host, "127.0.2.1");
        assert_eq!(proxied.controller_listener().unwrap().host, "127.0.1.1");
        let advertised_elsewhere = config(&[
            ("listeners", "PLAINTEXT://127.0.1.1:19092,CONTROLLER://127.0.1.1:19093"),
            ("advertised.listeners", "CONTROLLER://127.0.2.9:19093"),
            ("controller.quorum.voters", voters),
        ]);
        let err = error(&advertised_elsewhere, 1);
        assert!(err.contains("reached at 127.0.2.9:19093"), "{err}");
    }

    #[test]
    fn mistakes_are_refused_naming_the_key() {
        let voters = "1@127.0.0.1:19093,2@127.0.0.1:29093";
        let both = "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093";
        let not_a_voter = config(&[("listeners", both), ("controller.quorum.voters", voters)]);
        assert!(error(&not_a_voter, 3).contains("controller.quorum.voters"));
        let wrong_port = config(&[
            ("listeners", "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19999"),
            ("controller.quorum.voters", voters),
        ]);
        let err = error(&wrong_port, 1);
        assert!(err.contains("controller.quorum.voters") && err.contains("19999"), "{err}");
        let no_controller_listener =
            config(&[("listeners", "PLAINTEXT://127.0.0.1:19092"), ("controller.quorum.voters", voters)]);
        assert!(error(&no_controller_listener, 1).contains("listeners"));
        let broker_without_voters = config(&[("process.roles", "broker")]);
        assert!(error(&broker_without_voters, 1).contains("controller.quorum.voters"));
        let bad_inter_broker = config(&[("inter.broker.listener.name", "REPLICATION")]);
        assert!(error(&bad_inter_broker, 1).contains("inter.broker.listener.name"));

        let mut c = ClusterConfig::default();
        for (key, value) in [
            ("process.roles", "broker,zookeeper"),
            ("process.roles", ""),
            ("controller.quorum.voters", "1@localhost"),
            ("controller.quorum.voters", "1@h:1,1@h:2"),
            ("listeners", "SSL://h:1"),
            ("listeners", "PLAINTEXT://h:1,PLAINTEXT://h:2"),
            ("default.replication.factor", "0"),
            ("broker.session.timeout.ms", "soon"),
        ] {
            let err = c.set(key, value).unwrap_err().to_string();
            assert!(err.contains(key), "{key}={value}: {err}");
        }
        assert!(!c.set("log.retention.ms", "1").unwrap(), "not a cluster key");
    }
}
