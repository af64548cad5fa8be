//! A deterministic simulation of a whole cluster: three brokers running the real
//! replication state machines, the real controller, a producer with `acks=all`, and a
//! network that delays, drops, reorders and cuts messages. Brokers crash (losing what they
//! had not flushed) and restart; the controller fails over. Everything random comes from
//! one seed, so a failing seed replays exactly.

pub mod broker;
pub mod check;
pub mod controller;
pub mod log;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use freshet_log::controller::{AlterPartition, ControllerConfig, MetadataRecord, PartitionRegistration};
use freshet_log::replication::{ReplicaFetch, ReplicationConfig};
use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;
use uuid::Uuid;

use broker::SimBroker;
use check::Checker;
use controller::SimController;
use log::Entry;

pub const CONTROLLER: i32 = 0;
pub const CLIENT: i32 = 100;
pub const BROKERS: i32 = 3;
pub const PARTITIONS: i32 = 2;

/// (topic id, partition).
pub type Key = (Uuid, i32);

/// Every timing of the simulated cluster, scaled down from Kafka's defaults so that a
/// minute of simulated time sees many elections.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub tick_ms: i64,
    pub heartbeat_ms: i64,
    pub register_retry_ms: i64,
    pub metadata_fetch_ms: i64,
    pub fetch_timeout_ms: i64,
    pub fetch_max_entries: usize,
    pub produce_timeout_ms: i64,
    pub min_insync_replicas: i32,
    pub replication: ReplicationConfig,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            tick_ms: 50,
            heartbeat_ms: 200,
            register_retry_ms: 300,
            metadata_fetch_ms: 50,
            fetch_timeout_ms: 400,
            fetch_max_entries: 40,
            produce_timeout_ms: 1_500,
            min_insync_replicas: 2,
            replication: ReplicationConfig { replica_lag_time_max_ms: 800, alter_partition_retry_ms: 500 },
        }
    }
}

const SESSION_TIMEOUT_MS: i64 = 1_200;

#[derive(Debug, Clone)]
pub enum FetchAnswer {
    /// NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH and the like: the metadata will tell.
    Refused,
    Diverging {
        epoch: i32,
        end_offset: i64,
    },
    Records {
        fetch_offset: i64,
        entries: Vec<Entry>,
        high_watermark: i64,
    },
}

#[derive(Debug, Clone)]
pub enum Msg {
    Register { incarnation: Uuid, previous_epoch: Option<i64> },
    RegisterReply { incarnation: Uuid, result: Result<i64, i16> },
    Heartbeat { broker_epoch: i64, metadata_offset: i64, want_shutdown: bool },
    HeartbeatReply { should_shut_down: bool },
    Alter(AlterPartition),
    AlterReply { key: Key, answer: Result<PartitionRegistration, i16> },
    MetadataFetch { from: i64 },
    Metadata { from: i64, records: Vec<MetadataRecord> },
    Fetch { fetch_id: u64, broker_epoch: i64, partitions: Vec<(Key, ReplicaFetch)> },
    FetchReply { fetch_id: u64, partitions: Vec<(Key, i32, FetchAnswer)> },
    Produce { key: Key, value: u64 },
    ProduceReply { key: Key, value: u64, result: Result<i64, i16> },
}

#[derive(Debug)]
enum Event {
    Deliver { from: i32, to: i32, msg: Msg },
    Tick { broker: i32, incarnation: u64 },
    ControllerTick,
    Produce,
    Fault,
    Restart(i32),
    Heal(Vec<(i32, i32)>),
    ControllerTakeOver,
}

/// How much goes wrong.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub run_ms: i64,
    pub settle_ms: i64,
    pub drop_rate: f64,
    pub crashes: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self { run_ms: 30_000, settle_ms: 15_000, drop_rate: 0.02, crashes: true }
    }
}

pub struct Sim {
    rng: XorShiftRng,
    now: i64,
    seq: u64,
    queue: BTreeMap<(i64, u64), Event>,
    controller: SimController,
    brokers: BTreeMap<i32, SimBroker>,
    cuts: BTreeSet<(i32, i32)>,
    faults: Faults,
    timing: Timing,
    checker: Checker,
    next_value: u64,
    topic: Uuid,
    trace: VecDeque<String>,
    pub stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub events: u64,
    pub acked: u64,
    pub crashes: u64,
    pub clean_stops: u64,
    pub cuts: u64,
    pub failovers: u64,
    pub leader_epochs: i32,
}

impl Sim {
    pub fn new(seed: u64, faults: Faults) -> Self {
        let timing = Timing::default();
        let config = ControllerConfig {
            session_timeout_ms: SESSION_TIMEOUT_MS,
            min_insync_replicas: timing.min_insync_replicas,
            default_replication_factor: 3,
            ..ControllerConfig::default()
        };
        let mut sim = Self {
            rng: XorShiftRng::seed_from_u64(seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            controller: SimController::new(config),
            brokers: (1..=BROKERS).map(|id| (id, SimBroker::new(id, timing))).collect(),
            cuts: BTreeSet::new(),
            faults,
            timing,
            checker: Checker::default(),
            next_value: 0,
            topic: Uuid::from_u128(0x7070),
            trace: VecDeque::new(),
            stats: Stats::default(),
        };
        for id in 1..=BROKERS {
            let delay = sim.rng.random_range(0..timing.tick_ms);
            sim.schedule(delay, Event::Tick { broker: id, incarnation: 1 });
        }
        sim.schedule(100, Event::ControllerTick);
        sim.schedule(1_000, Event::Produce);
        sim.schedule(2_000, Event::Fault);
        sim
    }

    fn schedule(&mut self, after_ms: i64, event: Event) {
        self.seq += 1;
        self.queue.insert((self.now + after_ms, self.seq), event);
    }

    fn note(&mut self, what: String) {
        if self.trace.len() == 400 {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>6} {what}", self.now));
    }

    /// Runs to the end; `Err` describes the first violations with the events before them.
    pub fn run(mut self) -> Result<Stats, String> {
        let end = self.faults.run_ms + self.faults.settle_ms;
        while let Some(((at, _), event)) = self.queue.pop_first() {
            if at > end {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            let log_before = self.controller.log.len();
            self.step(event);
            let records: Vec<String> =
                self.controller.log[log_before..].iter().map(|r| format!("metadata {r:?}")).collect();
            for note in records.into_iter().chain(std::mem::take(&mut self.checker.notes)) {
                self.note(note);
            }
            self.check();
            if !self.checker.violations.is_empty() {
                return Err(self.report());
            }
        }
        self.check_settled();
        if self.checker.violations.is_empty() { Ok(self.stats) } else { Err(self.report()) }
    }

    fn report(&self) -> String {
        let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        format!("{}\n--- last events ---\n{}", self.checker.violations.join("\n"), trace.join("\n"))
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, msg } => self.deliver(from, to, msg),
            Event::Tick { broker, incarnation } => {
                let b = &self.brokers[&broker];
                if !b.up || b.incarnation != incarnation {
                    return;
                }
                let flush = self.rng.random_bool(0.05);
                let mut out = Vec::new();
                let b = self.brokers.get_mut(&broker).expect("broker");
                b.tick(self.now, &mut out, &mut self.checker, flush);
                self.send_all(broker, out);
                if !self.stop_if_done(broker) {
                    self.schedule(self.timing.tick_ms, Event::Tick { broker, incarnation });
                }
            }
            Event::ControllerTick => {
                if self.controller.is_up(self.now) {
                    self.controller.tick(self.now);
                }
                self.create_topic_once();
                self.schedule(100, Event::ControllerTick);
            }
            Event::Produce => {
                self.produce();
                let next = self.rng.random_range(5..25);
                self.schedule(next, Event::Produce);
            }
            Event::Fault => {
                if self.now < self.faults.run_ms {
                    self.inject_fault();
                    let next = self.rng.random_range(300..2_500);
                    self.schedule(next, Event::Fault);
                } else {
                    self.heal_everything();
                }
            }
            Event::Restart(id) => {
                let b = self.brokers.get_mut(&id).expect("broker");
                if !b.up {
                    b.restart();
                    let incarnation = b.incarnation;
                    self.note(format!("restart broker {id} (incarnation {incarnation})"));
                    self.schedule(1, Event::Tick { broker: id, incarnation });
                }
            }
            Event::Heal(cuts) => {
                for cut in cuts {
                    self.cuts.remove(&cut);
                }
                self.note(format!("heal, cuts left {:?}", self.cuts));
            }
            Event::ControllerTakeOver => {
                self.controller.take_over(self.now);
                self.note("a new controller takes over".into());
            }
        }
    }

    fn create_topic_once(&mut self) {
        let unfenced = self.controller.image().brokers.values().filter(|b| !b.fenced).count();
        if self.controller.image().topics.is_empty() && unfenced == BROKERS as usize && self.controller.is_up(self.now)
        {
            assert!(self.controller.create_topic("events", self.topic, PARTITIONS, 3));
            self.note("topic created".into());
        }
    }

    fn linked(&self, a: i32, b: i32) -> bool {
        !self.cuts.contains(&(a.min(b), a.max(b)))
    }

    /// Sends with a delay of 1–15 ms, now and then (2%) 0.1–1.5 s, so that answers arrive
    /// after their retries; some messages are lost and 1% arrive twice.
    fn send_all(&mut self, from: i32, out: Vec<(i32, Msg)>) {
        for (to, msg) in out {
            if !self.linked(from, to) || self.rng.random_bool(self.faults.drop_rate) {
                continue;
            }
            if self.rng.random_bool(0.01) {
                let again = self.rng.random_range(1..500);
                self.schedule(again, Event::Deliver { from, to, msg: msg.clone() });
            }
            let delay = if self.rng.random_bool(0.02) {
                self.rng.random_range(100..1_500)
            } else {
                self.rng.random_range(1..15)
            };
            self.schedule(delay, Event::Deliver { from, to, msg });
        }
    }

    fn deliver(&mut self, from: i32, to: i32, msg: Msg) {
        if !self.linked(from, to) {
            return;
        }
        match to {
            CONTROLLER => {
                if !self.controller.is_up(self.now) {
                    return;
                }
                if let Some(reply) = self.controller.handle(from, msg, self.now) {
                    self.send_all(CONTROLLER, vec![(from, reply)]);
                }
            }
            CLIENT => {
                if let Msg::ProduceReply { key, value, result: Ok(offset) } = msg {
                    self.stats.acked += 1;
                    self.checker.acknowledged(key, offset, value);
                }
            }
            broker => {
                let b = self.brokers.get_mut(&broker).expect("broker");
                if !b.up {
                    return;
                }
                let mut out = Vec::new();
                b.handle(from, msg, self.now, &mut out, &mut self.checker);
                self.send_all(broker, out);
                self.stop_if_done(broker);
            }
        }
    }

    /// The producer sends to the leader the controller names; a client's metadata may be
    /// stale, so now and then it picks a broker at random.
    fn produce(&mut self) {
        let p = self.rng.random_range(0..PARTITIONS);
        let key = (self.topic, p);
        let leader = match self.controller.image().partition(self.topic, p) {
            Some(reg) if reg.has_leader() && !self.rng.random_bool(0.1) => reg.leader,
            _ => self.rng.random_range(1..=BROKERS),
        };
        self.next_value += 1;
        let value = self.next_value;
        self.send_all(CLIENT, vec![(leader, Msg::Produce { key, value })]);
    }

    fn inject_fault(&mut self) {
        let victim = self.rng.random_range(1..=BROKERS);
        match self.rng.random_range(0..100) {
            0..35 if self.faults.crashes => self.crash(victim),
            0..60 => self.cut(victim),
            60..72 => {
                let b = self.brokers.get_mut(&victim).expect("broker");
                if b.up && b.begin_controlled_shutdown(self.now) {
                    self.note(format!("SIGTERM broker {victim}: controlled shutdown"));
                }
            }
            72..85 => {
                let down_ms = self.rng.random_range(200..2_500);
                self.controller.fail_over(self.now + down_ms);
                self.stats.failovers += 1;
                self.note(format!("controller fails over for {down_ms} ms"));
                self.schedule(down_ms, Event::ControllerTakeOver);
            }
            _ => {
                let cut: Vec<(i32, i32)> =
                    (1..=BROKERS).filter(|b| *b != victim).map(|b| (b.min(victim), b.max(victim))).collect();
                self.note(format!("broker {victim} cut from the other brokers only"));
                self.isolate(cut);
            }
        }
    }

    /// A broker in controlled shutdown stops once the controller lets it (or its patience
    /// runs out), with every log flushed, and restarts later claiming a clean shutdown.
    fn stop_if_done(&mut self, id: i32) -> bool {
        let b = self.brokers.get_mut(&id).expect("broker");
        if !b.up || !b.shutdown_done(self.now) {
            return false;
        }
        b.stop_cleanly();
        self.stats.clean_stops += 1;
        self.note(format!("broker {id} stopped cleanly"));
        let restart_ms = self.rng.random_range(200..3_000);
        self.schedule(restart_ms, Event::Restart(id));
        true
    }

    fn cut(&mut self, victim: i32) {
        let mut cut = vec![(CONTROLLER, victim)];
        if self.rng.random_bool(0.6) {
            cut.extend((1..=BROKERS).filter(|b| *b != victim).map(|b| (b.min(victim), b.max(victim))));
            cut.push((victim, CLIENT));
            self.note(format!("broker {victim} cut from everyone"));
        } else {
            self.note(format!("broker {victim} cut from the controller"));
        }
        self.isolate(cut);
    }

    fn isolate(&mut self, cut: Vec<(i32, i32)>) {
        self.stats.cuts += 1;
        self.cuts.extend(cut.iter().copied());
        let heal_ms = self.rng.random_range(300..5_000);
        self.schedule(heal_ms, Event::Heal(cut));
    }

    /// kill -9 of `victim`, within what Kafka promises without fsync: with replication
    /// factor 3 and `min.insync.replicas=2`, one replica may fail at a time. So a kill waits
    /// until the previous killed broker has registered again (its registration takes it out
    /// of every ISR and ELR; until then the controller may count its lost tail as in sync),
    /// and it needs another running replica in the ISR or ELR that holds what consumers were
    /// shown. A killed broker's disk never counts: it may have lost its unflushed tail.
    fn crash(&mut self, victim: i32) {
        let undetected = self.brokers.values().any(|b| b.crash_undetected);
        if !self.brokers[&victim].up || undetected || !self.crash_keeps_a_copy(victim) {
            return;
        }
        let b = self.brokers.get_mut(&victim).expect("broker");
        b.crash();
        self.checker.crashed(&self.brokers[&victim]);
        self.stats.crashes += 1;
        self.note(format!("kill -9 broker {victim}"));
        let restart_ms = self.rng.random_range(200..4_000);
        self.schedule(restart_ms, Event::Restart(victim));
    }

    fn crash_keeps_a_copy(&self, victim: i32) -> bool {
        let image = self.controller.image();
        image.topics.values().flat_map(|t| t.partitions.iter().map(move |(p, r)| ((t.id, *p), r))).all(|(key, reg)| {
            let exposed = self.checker.exposed.get(&key).map_or(&[][..], Vec::as_slice);
            reg.isr.iter().chain(&reg.elr).any(|m| {
                let Some(b) = self.brokers.get(m) else { return false };
                let Some(log) = b.logs.get(&key) else { return exposed.is_empty() };
                // A broker restarted since it joined has not registered again yet: its
                // registration will take it out of the ISR and ELR.
                let same_process = b.up && b.broker_epoch.is_some() && b.broker_epoch == image.broker_epoch(*m);
                *m != victim
                    && same_process
                    && log.entries.len() >= exposed.len()
                    && log.entries[..exposed.len()] == *exposed
            })
        })
    }

    fn heal_everything(&mut self) {
        self.cuts.clear();
        self.note("faults stop: every cut heals, every broker restarts".into());
        let down: Vec<i32> = self.brokers.values().filter(|b| !b.up).map(|b| b.id).collect();
        for id in down {
            self.schedule(1, Event::Restart(id));
        }
    }

    fn check(&mut self) {
        for b in self.brokers.values() {
            self.checker.observe_leaders(b);
        }
        self.checker.check_isr(self.controller.image(), &self.brokers);
    }

    /// After the faults stop and the cluster settles, every partition has a leader whose
    /// high watermark covers everything ever exposed.
    fn check_settled(&mut self) {
        let image = self.controller.image().clone();
        for topic in image.topics.values() {
            for (p, reg) in &topic.partitions {
                self.stats.leader_epochs = self.stats.leader_epochs.max(reg.leader_epoch);
                let key = (topic.id, *p);
                let exposed = self.checker.exposed.get(&key).map_or(0, Vec::len) as i64;
                let leader = self.brokers.get(&reg.leader);
                let hw = leader.and_then(|b| b.states.get(&key)).filter(|s| s.is_leader()).map(|s| s.high_watermark());
                if hw.is_none_or(|hw| hw < exposed) {
                    let what = format!(
                        "partition {p} did not recover: leader {} with high watermark {hw:?}, {exposed} entries exposed; {reg:?}",
                        reg.leader
                    );
                    self.checker.violations.push(what);
                }
            }
        }
        if image.topics.is_empty() {
            self.checker.violations.push("the topic was never created".into());
        }
    }
}
