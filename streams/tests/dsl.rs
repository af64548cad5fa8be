//! Every DSL operator, run through the TopologyTestDriver.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshet_streams::processor::{
    FixedKeyContext, FixedKeyProcessor, FixedKeyRecord, Processor, ProcessorContext, PunctuationType, Punctuator,
};
use freshet_streams::serde::Serdes;
use freshet_streams::state::{KeyValueStore, StoreBuilder};
use freshet_streams::{
    Consumed, Grouped, Materialized, Produced, Record, Repartitioned, StreamsBuilder, StreamsConfig, TopologyTestDriver,
};
use parking_lot::Mutex;

fn config() -> StreamsConfig {
    StreamsConfig::new("app", "unused:9092")
}

fn strings() -> Consumed<freshet_streams::serde::StringSerde, freshet_streams::serde::StringSerde> {
    Consumed::with(Serdes::string(), Serdes::string())
}

fn produced() -> Produced<freshet_streams::serde::StringSerde, freshet_streams::serde::StringSerde> {
    Produced::with(Serdes::string(), Serdes::string())
}

fn driver(builder: StreamsBuilder) -> TopologyTestDriver {
    TopologyTestDriver::new(builder.build().unwrap(), config()).unwrap()
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn stateless_operators() {
    let builder = StreamsBuilder::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let each = Arc::new(Mutex::new(Vec::new()));
    let input = builder.stream("in", strings());
    input.filter(|_, v| v.len() > 2).to("filtered", produced());
    input.filter_not(|_, v| v.len() > 2).to("short", produced());
    input.map(|k, v| (v, k)).to("swapped", produced());
    input.map_values(|v| v.to_uppercase()).to("upper", produced());
    input.map_values_with_key(|k, v| format!("{k}:{v}")).to("joined", produced());
    input
        .flat_map(|k, v| v.chars().map(move |c| (format!("{k}{c}"), c.to_string())).collect::<Vec<_>>())
        .to("chars", produced());
    input.flat_map_values(|v| v.split('-').map(str::to_string).collect::<Vec<_>>()).to("parts", produced());
    input.select_key(|_, v| v.len().to_string()).to("by-length", produced());
    let seen2 = seen.clone();
    input.peek(move |k, v| seen2.lock().push((k.clone(), v.clone()))).to("peeked", produced());
    let each2 = each.clone();
    input.foreach(move |k, _| each2.lock().push(k.clone()));
    let d = driver(builder);
    let pipe = d.input_topic("in", Serdes::string(), Serdes::string());
    pipe.pipe_input(s("k"), s("a-bc")).unwrap();
    pipe.pipe_input(s("j"), s("x")).unwrap();
    let out = |t: &str| d.output_topic(t, Serdes::string(), Serdes::string()).read_key_values().unwrap();
    assert_eq!(out("filtered"), vec![(s("k"), s("a-bc"))]);
    assert_eq!(out("short"), vec![(s("j"), s("x"))]);
    assert_eq!(out("swapped"), vec![(s("a-bc"), s("k")), (s("x"), s("j"))]);
    assert_eq!(out("upper"), vec![(s("k"), s("A-BC")), (s("j"), s("X"))]);
    assert_eq!(out("joined"), vec![(s("k"), s("k:a-bc")), (s("j"), s("j:x"))]);
    assert_eq!(out("chars").len(), 5);
    assert_eq!(out("parts"), vec![(s("k"), s("a")), (s("k"), s("bc")), (s("j"), s("x"))]);
    assert_eq!(out("by-length"), vec![(s("4"), s("a-bc")), (s("1"), s("x"))]);
    assert_eq!(out("peeked").len(), 2);
    assert_eq!(seen.lock().len(), 2);
    assert_eq!(*each.lock(), vec![s("k"), s("j")]);
}

#[test]
fn timestamps_and_headers_travel_with_records() {
    let builder = StreamsBuilder::new();
    builder.stream("in", strings()).map_values(|v| v + "!").to("out", produced());
    let d = driver(builder);
    let pipe = d.input_topic("in", Serdes::string(), Serdes::string());
    pipe.pipe_raw(Some("k".into()), Some("v".into()), 1234, vec![(s("trace"), Some("t1".into()))]).unwrap();
    let record = d.output_topic("out", Serdes::string(), Serdes::string()).read_record().unwrap().unwrap();
    assert_eq!(record.value, "v!");
    assert_eq!(record.timestamp, 1234);
    assert_eq!(record.headers, vec![(s("trace"), Some("t1".into()))]);
}

#[test]
fn split_merge_and_dynamic_topics() {
    let builder = StreamsBuilder::new();
    let branches = builder
        .stream("in", strings())
        .split_named("genre-")
        .branch("drama", |_, v| v.starts_with("drama"))
        .branch("fantasy", |_, v| v.starts_with("fantasy"))
        .default_branch("other");
    assert_eq!(branches.keys().cloned().collect::<Vec<_>>(), ["genre-drama", "genre-fantasy", "genre-other"]);
    branches["genre-drama"].to("drama", produced());
    branches["genre-fantasy"].merge(&branches["genre-other"]).to("rest", produced());
    branches["genre-other"]
        .to_dynamic(|k, _, ctx| format!("{k}-from-{}", ctx.topic.as_deref().unwrap_or("?")), produced());
    let d = driver(builder);
    let pipe = d.input_topic("in", Serdes::string(), Serdes::string());
    for v in ["drama 1", "fantasy 1", "comedy 1", "drama 2"] {
        pipe.pipe_input(s("k"), s(v)).unwrap();
    }
    let out = |t: &str| d.output_topic(t, Serdes::string(), Serdes::string()).read_key_values().unwrap();
    assert_eq!(out("drama").len(), 2);
    assert_eq!(out("rest"), vec![(s("k"), s("fantasy 1")), (s("k"), s("comedy 1"))]);
    assert_eq!(out("k-from-in"), vec![(s("k"), s("comedy 1"))]);

    let builder = StreamsBuilder::new();
    let none = builder.stream("in", strings()).split().branch("a", |_, v| v == "a").no_default_branch();
    none.values().next().unwrap().to("only-a", produced());
    let d = driver(builder);
    let pipe = d.input_topic("in", Serdes::string(), Serdes::string());
    pipe.pipe_input(s("k"), s("b")).unwrap();
    pipe.pipe_input(s("k"), s("a")).unwrap();
    assert_eq!(
        d.output_topic("only-a", Serdes::string(), Serdes::string()).read_key_values().unwrap(),
        vec![(s("k"), s("a"))]
    );
}

#[test]
fn repartition_writes_a_named_internal_topic_and_reads_it_back() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", strings())
        .select_key(|_, v| v.clone())
        .repartition(Repartitioned::with(Serdes::string(), Serdes::string()).with_name("by-value").with_partitions(4))
        .to("out", produced());
    let topology = builder.build().unwrap();
    assert_eq!(topology.describe().matches("Sub-topology").count(), 2, "{}", topology.describe());
    let d = TopologyTestDriver::new(topology, config()).unwrap();
    d.input_topic("in", Serdes::string(), Serdes::string()).pipe_input(s("k"), s("v")).unwrap();
    assert_eq!(
        d.output_topic("out", Serdes::string(), Serdes::string()).read_key_values().unwrap(),
        vec![(s("v"), s("v"))]
    );
    assert!(d.produced_topic_names().contains(&s("app-by-value-repartition")), "{:?}", d.produced_topic_names());
}

fn wordcount(builder: &StreamsBuilder, materialized: Materialized) {
    builder
        .stream("lines", Consumed::with(Serdes::optional(Serdes::string()), Serdes::string()))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .group_by(|_, w| w.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(materialized)
        .to_stream()
        .to("counts", Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
}

#[test]
fn count_through_a_repartition_with_and_without_the_cache() {
    for caching in [true, false] {
        let builder = StreamsBuilder::new();
        wordcount(&builder, Materialized::as_("counts-store").with_caching(caching));
        let d = driver(builder);
        let lines = d.input_topic("lines", Serdes::optional(Serdes::string()), Serdes::string());
        lines.pipe_input(None, s("a b a")).unwrap();
        lines.pipe_input(None, s("b")).unwrap();
        let out =
            d.output_topic("counts", Serdes::string(), Serdes::optional(Serdes::i64())).read_key_values().unwrap();
        if caching {
            // The cache held back the first "a": one update per key per commit, in the
            // order of each key's last update (as Kafka's cache flushes).
            assert_eq!(out, vec![(s("b"), Some(1)), (s("a"), Some(2)), (s("b"), Some(2))]);
        } else {
            assert_eq!(out, vec![(s("a"), Some(1)), (s("b"), Some(1)), (s("a"), Some(2)), (s("b"), Some(2))]);
        }
        let mut store: KeyValueStore<String, i64> = d.key_value_store("counts-store").unwrap();
        assert_eq!(store.get(&s("a")).unwrap(), Some(2));
        let all: Vec<_> = store.all().map(Result::unwrap).collect();
        assert_eq!(all, vec![(s("a"), 2), (s("b"), 2)]);
        // Every write that reached the store reached the changelog.
        let changelog =
            d.output_topic("app-counts-store-changelog", Serdes::string(), Serdes::i64()).read_key_values().unwrap();
        assert_eq!(changelog.last(), Some(&(s("b"), 2)));
        assert_eq!(changelog.len(), out.len());
        assert!(d.produced_topic_names().contains(&s("app-counts-store-repartition")));
    }
}

#[test]
fn reduce_and_aggregate_per_key() {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream("in", Consumed::with(Serdes::string(), Serdes::i64()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::i64()));
    grouped
        .reduce(|a, b| a.max(b), Materialized::as_("max").with_caching(false))
        .to_stream()
        .to("max", Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
    grouped
        .aggregate(
            Vec::new,
            |_, v, mut all: Vec<i64>| {
                all.push(v);
                all
            },
            Materialized::as_("all").with_value_serde(Serdes::json::<Vec<i64>>()).with_caching(false).in_memory(),
        )
        .to_stream()
        .to("all", Produced::with(Serdes::string(), Serdes::optional(Serdes::json::<Vec<i64>>())));
    let topology = builder.build().unwrap();
    assert_eq!(topology.describe().matches("Sub-topology").count(), 1, "group_by_key needs no repartition");
    let d = TopologyTestDriver::new(topology, config()).unwrap();
    let pipe = d.input_topic("in", Serdes::string(), Serdes::i64());
    pipe.pipe_key_values([(s("x"), 3), (s("x"), 1), (s("y"), 5), (s("x"), 7)]).unwrap();
    let max = d.output_topic("max", Serdes::string(), Serdes::optional(Serdes::i64())).read_key_values().unwrap();
    assert_eq!(max, vec![(s("x"), Some(3)), (s("x"), Some(3)), (s("y"), Some(5)), (s("x"), Some(7))]);
    let all = d
        .output_topic("all", Serdes::string(), Serdes::optional(Serdes::json::<Vec<i64>>()))
        .read_key_values_to_map()
        .unwrap();
    assert_eq!(all, BTreeMap::from([(s("x"), Some(vec![3, 1, 7])), (s("y"), Some(vec![5]))]));
}

#[test]
fn tables_upsert_delete_filter_map_and_stream() {
    let builder = StreamsBuilder::new();
    let table = builder.table("users", strings(), Materialized::as_("users-store").with_caching(false));
    assert_eq!(table.queryable_store_name(), Some("users-store"));
    table.to_stream().to("changes", Produced::with(Serdes::string(), Serdes::optional(Serdes::string())));
    table
        .filter(|_, v| v.starts_with("eu"))
        .map_values(|v| v.to_uppercase())
        .to_stream()
        .to("eu", Produced::with(Serdes::string(), Serdes::optional(Serdes::string())));
    table
        .filter_not(|_, v| v.starts_with("eu"))
        .to_stream()
        .to("not-eu", Produced::with(Serdes::string(), Serdes::optional(Serdes::string())));
    let d = driver(builder);
    let users = d.input_topic("users", Serdes::string(), Serdes::optional(Serdes::string()));
    users.pipe_input(s("ann"), Some(s("eu-west"))).unwrap();
    users.pipe_input(s("bob"), Some(s("us-east"))).unwrap();
    users.pipe_input(s("ann"), Some(s("us-west"))).unwrap();
    users.pipe_input(s("bob"), None).unwrap();
    let read =
        |t: &str| d.output_topic(t, Serdes::string(), Serdes::optional(Serdes::string())).read_key_values().unwrap();
    assert_eq!(
        read("changes"),
        vec![
            (s("ann"), Some(s("eu-west"))),
            (s("bob"), Some(s("us-east"))),
            (s("ann"), Some(s("us-west"))),
            (s("bob"), None)
        ]
    );
    // Ann left the EU: the filtered table deletes her.
    assert_eq!(read("eu"), vec![(s("ann"), Some(s("EU-WEST"))), (s("ann"), None)]);
    assert_eq!(read("not-eu"), vec![(s("bob"), Some(s("us-east"))), (s("ann"), Some(s("us-west"))), (s("bob"), None)]);
    let mut store: KeyValueStore<String, String> = d.key_value_store("users-store").unwrap();
    assert_eq!(store.get(&s("ann")).unwrap(), Some(s("us-west")));
    assert_eq!(store.get(&s("bob")).unwrap(), None);
}

#[test]
fn grouped_tables_retract_the_old_value() {
    let builder = StreamsBuilder::new();
    let users = builder.table("users", strings(), Materialized::new().with_caching(false));
    let by_region = users.group_by(|user, region| (region, user), Grouped::with(Serdes::string(), Serdes::string()));
    by_region
        .count(Materialized::as_("per-region").with_caching(false))
        .to_stream()
        .to("counts", Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
    by_region
        .reduce(
            |a, b| format!("{a},{b}"),
            |a, b| a.split(',').filter(|x| *x != b).collect::<Vec<_>>().join(","),
            Materialized::as_("names"),
        )
        .to_stream()
        .to("names", Produced::with(Serdes::string(), Serdes::optional(Serdes::string())));
    by_region
        .aggregate(
            || 0i64,
            |_, name, n| n + name.len() as i64,
            |_, name, n| n - name.len() as i64,
            Materialized::as_("letters").with_value_serde(Serdes::i64()),
        )
        .to_stream()
        .to("letters", Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
    let d = driver(builder);
    let pipe = d.input_topic("users", Serdes::string(), Serdes::optional(Serdes::string()));
    pipe.pipe_input(s("ann"), Some(s("eu"))).unwrap();
    pipe.pipe_input(s("bob"), Some(s("eu"))).unwrap();
    pipe.pipe_input(s("ann"), Some(s("us"))).unwrap();
    pipe.pipe_input(s("bob"), None).unwrap();
    let counts = d.output_topic("counts", Serdes::string(), Serdes::optional(Serdes::i64())).read_key_values().unwrap();
    assert_eq!(
        counts,
        vec![(s("eu"), Some(1)), (s("eu"), Some(2)), (s("eu"), Some(1)), (s("us"), Some(1)), (s("eu"), Some(0))]
    );
    let names =
        d.output_topic("names", Serdes::string(), Serdes::optional(Serdes::string())).read_key_values_to_map().unwrap();
    assert_eq!(names, BTreeMap::from([(s("eu"), Some(s(""))), (s("us"), Some(s("ann")))]));
    let mut letters: KeyValueStore<String, i64> = d.key_value_store("letters").unwrap();
    assert_eq!(letters.get(&s("us")).unwrap(), Some(3));
    assert_eq!(letters.get(&s("eu")).unwrap(), Some(0));
}

#[test]
fn to_table_repartitions_after_a_key_change() {
    let builder = StreamsBuilder::new();
    let latest = builder
        .stream("events", strings())
        .select_key(|_, v| v.split(':').next().unwrap_or_default().to_string())
        .to_table(
            Materialized::as_("latest")
                .with_key_serde(Serdes::string())
                .with_value_serde(Serdes::string())
                .with_caching(false),
        );
    latest.to_stream().to("latest-out", Produced::with(Serdes::string(), Serdes::optional(Serdes::string())));
    let topology = builder.build().unwrap();
    assert_eq!(topology.describe().matches("Sub-topology").count(), 2);
    let d = TopologyTestDriver::new(topology, config()).unwrap();
    let pipe = d.input_topic("events", Serdes::string(), Serdes::string());
    pipe.pipe_input(s("_"), s("a:1")).unwrap();
    pipe.pipe_input(s("_"), s("a:2")).unwrap();
    let mut store: KeyValueStore<String, String> = d.key_value_store("latest").unwrap();
    assert_eq!(store.get(&s("a")).unwrap(), Some(s("a:2")));
    assert_eq!(d.output_topic("latest-out", Serdes::string(), Serdes::optional(Serdes::string())).queue_size(), 2);
}

/// Counts per key in a store, emits the counts on stream-time punctuation and forwards
/// every record with a header.
struct Counter {
    store: Option<KeyValueStore<String, i64>>,
    stream_punctuations: Arc<Mutex<Vec<i64>>>,
    wall_punctuations: Arc<Mutex<Vec<i64>>>,
    wall: Option<Punctuator>,
}

impl Processor<String, String, String, i64> for Counter {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> freshet_streams::Result<()> {
        self.store = Some(ctx.get_state_store("seen")?);
        ctx.schedule(Duration::from_millis(10), PunctuationType::StreamTime);
        self.wall = Some(ctx.schedule(Duration::from_secs(1), PunctuationType::WallClockTime));
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> freshet_streams::Result<()> {
        let store = self.store.as_mut().unwrap();
        let n = store.get(&record.key)?.unwrap_or(0) + 1;
        store.put(&record.key, &n)?;
        let offset = ctx.record_context().offset;
        ctx.forward(
            Record::new(record.key, n, record.timestamp + 1).with_header("offset", Some(offset.to_string().into())),
        )
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        punctuator: Punctuator,
        timestamp: i64,
    ) -> freshet_streams::Result<()> {
        if Some(punctuator) == self.wall {
            self.wall_punctuations.lock().push(timestamp);
            if timestamp >= 2000 {
                ctx.cancel(punctuator);
            }
            return Ok(());
        }
        self.stream_punctuations.lock().push(timestamp);
        let total: i64 = self.store.as_ref().unwrap().all().map(|r| r.unwrap().1).sum();
        ctx.forward(Record::new(s("total"), total, timestamp))
    }
}

#[test]
fn processor_api_with_stores_headers_and_both_punctuations() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::in_memory("seen", Serdes::string(), Serdes::i64()));
    let stream_p = Arc::new(Mutex::new(Vec::new()));
    let wall_p = Arc::new(Mutex::new(Vec::new()));
    let (sp, wp) = (stream_p.clone(), wall_p.clone());
    builder
        .stream("in", strings())
        .process(
            move || Counter { store: None, stream_punctuations: sp.clone(), wall_punctuations: wp.clone(), wall: None },
            &["seen"],
        )
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let d = driver(builder);
    let pipe = d.input_topic("in", Serdes::string(), Serdes::string());
    pipe.pipe_input_at(s("a"), s("x"), 3).unwrap();
    pipe.pipe_input_at(s("a"), s("x"), 5).unwrap();
    pipe.pipe_input_at(s("b"), s("x"), 27).unwrap();
    // Stream time 3 fires the punctuation aligned at 0; 5 does not; 27 fires once for the gap.
    assert_eq!(*stream_p.lock(), vec![3, 27]);
    let out = d.output_topic("out", Serdes::string(), Serdes::i64()).read_records().unwrap();
    let kv: Vec<(String, i64)> = out.iter().map(|r| (r.key.clone(), r.value)).collect();
    assert_eq!(kv, vec![(s("a"), 1), (s("total"), 1), (s("a"), 2), (s("b"), 1), (s("total"), 3)]);
    assert_eq!(out[0].timestamp, 4);
    assert_eq!(out[2].headers, vec![(s("offset"), Some("1".into()))]);
    // Wall-clock punctuations: one per advance past each second, cancelled at 2 s.
    d.advance_wall_clock_time(Duration::from_millis(999)).unwrap();
    assert!(wall_p.lock().is_empty());
    d.advance_wall_clock_time(Duration::from_millis(1)).unwrap();
    d.advance_wall_clock_time(Duration::from_secs(5)).unwrap();
    d.advance_wall_clock_time(Duration::from_secs(5)).unwrap();
    assert_eq!(*wall_p.lock(), vec![1000, 6000]);
    // The store logs to its changelog.
    let changelog = d.output_topic("app-seen-changelog", Serdes::string(), Serdes::i64()).read_key_values().unwrap();
    assert_eq!(changelog, vec![(s("a"), 1), (s("a"), 2), (s("b"), 1)]);
}

/// Counts per key in a store and forwards nothing: the store's changelog is all it writes.
struct SilentCounter(Option<KeyValueStore<String, i64>>);

impl Processor<String, String, String, i64> for SilentCounter {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> freshet_streams::Result<()> {
        self.0 = Some(ctx.get_state_store("cached")?);
        Ok(())
    }

    fn process(
        &mut self,
        _ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> freshet_streams::Result<()> {
        let store = self.0.as_mut().unwrap();
        let n = store.get(&record.key)?.unwrap_or(0) + 1;
        store.put(&record.key, &n)
    }
}

#[test]
fn a_cached_processor_api_store_is_flushed_and_logged_at_every_commit() {
    for kind in ["persistent", "in-memory"] {
        let builder = StreamsBuilder::new();
        let store = match kind {
            "persistent" => StoreBuilder::persistent("cached", Serdes::string(), Serdes::i64()),
            _ => StoreBuilder::in_memory("cached", Serdes::string(), Serdes::i64()),
        };
        builder.add_state_store(store.caching(true));
        builder.stream("in", strings()).process(|| SilentCounter(None), &["cached"]);
        let d = driver(builder);
        let pipe = d.input_topic("in", Serdes::string(), Serdes::string());
        pipe.pipe_key_values([(s("a"), s("x")), (s("a"), s("y")), (s("b"), s("z"))]).unwrap();
        // The driver commits after each record, as Kafka's does: each commit must write the
        // cache down to the store and its changelog, or the committed input has no state.
        let changelog = d.output_topic("app-cached-changelog", Serdes::string(), Serdes::i64());
        assert_eq!(changelog.read_key_values().unwrap(), vec![(s("a"), 1), (s("a"), 2), (s("b"), 1)], "{kind}");
    }
}

struct Suffix;

impl FixedKeyProcessor<String, String, String> for Suffix {
    fn process(
        &mut self,
        ctx: &mut FixedKeyContext<'_, String, String>,
        record: FixedKeyRecord<String, String>,
    ) -> freshet_streams::Result<()> {
        let value = format!("{}@{}", record.value, record.key());
        ctx.forward(record.with_value(value))
    }
}

#[test]
fn process_values_keeps_keys_so_grouping_needs_no_repartition() {
    let builder = StreamsBuilder::new();
    let out = builder.stream("in", strings()).process_values(|| Suffix, &[]);
    out.to("out", produced());
    out.group_by_key(Grouped::with(Serdes::string(), Serdes::string())).count(Materialized::new());
    let topology = builder.build().unwrap();
    assert_eq!(topology.describe().matches("Sub-topology").count(), 1);
    let d = TopologyTestDriver::new(topology, config()).unwrap();
    d.input_topic("in", Serdes::string(), Serdes::string()).pipe_input(s("k"), s("v")).unwrap();
    assert_eq!(
        d.output_topic("out", Serdes::string(), Serdes::string()).read_key_values().unwrap(),
        vec![(s("k"), s("v@k"))]
    );
}

#[test]
fn global_tables_load_every_record() {
    let builder = StreamsBuilder::new();
    let global = builder.global_table("countries", strings(), Materialized::as_("countries-store"));
    assert_eq!(global.queryable_store_name(), "countries-store");
    builder.stream("in", strings()).to("out", produced());
    let d = driver(builder);
    let pipe = d.input_topic("countries", Serdes::string(), Serdes::optional(Serdes::string()));
    pipe.pipe_input(s("fr"), Some(s("France"))).unwrap();
    pipe.pipe_input(s("de"), Some(s("Germany"))).unwrap();
    pipe.pipe_input(s("fr"), None).unwrap();
    let store: KeyValueStore<String, String> = d.key_value_store("countries-store").unwrap();
    let all: Vec<_> = store.all().map(Result::unwrap).collect();
    assert_eq!(all, vec![(s("de"), s("Germany"))]);
    assert!(!d.produced_topic_names().iter().any(|t| t.contains("changelog")), "the topic is the changelog");
}

struct WrongTypes;

impl Processor<String, String, String, String> for WrongTypes {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> freshet_streams::Result<()> {
        let _store: KeyValueStore<String, String> = ctx.get_state_store("seen")?;
        Ok(())
    }

    fn process(
        &mut self,
        _: &mut ProcessorContext<'_, String, String>,
        _: Record<String, String>,
    ) -> freshet_streams::Result<()> {
        Ok(())
    }
}

struct Unconnected;

impl Processor<String, String, String, String> for Unconnected {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> freshet_streams::Result<()> {
        let _store: KeyValueStore<String, i64> = ctx.get_state_store("seen")?;
        Ok(())
    }

    fn process(
        &mut self,
        _: &mut ProcessorContext<'_, String, String>,
        _: Record<String, String>,
    ) -> freshet_streams::Result<()> {
        Ok(())
    }
}

#[test]
fn topology_mistakes_are_rejected_naming_the_operator() {
    // A store that was never added.
    let builder = StreamsBuilder::new();
    builder.stream("in", strings()).process(|| Suffix2, &["missing"]);
    let e = builder.build().unwrap_err().to_string();
    assert!(e.contains("KSTREAM-PROCESSOR-0000000001") && e.contains("'missing'"), "{e}");

    // A store asked for with the wrong types.
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::in_memory("seen", Serdes::string(), Serdes::i64()));
    builder.stream("in", strings()).process(|| WrongTypes, &["seen"]);
    let e = TopologyTestDriver::new(builder.build().unwrap(), config()).unwrap_err().to_string();
    assert!(e.contains("KSTREAM-PROCESSOR-0000000001") && e.contains("holds <alloc::string::String, i64>"), "{e}");

    // A store the processor was not connected to.
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::in_memory("seen", Serdes::string(), Serdes::i64()));
    builder.stream("in", strings()).process(|| Unconnected, &[]);
    let e = TopologyTestDriver::new(builder.build().unwrap(), config()).unwrap_err().to_string();
    assert!(e.contains("was not connected"), "{e}");

    // Two sources on one topic; one store name twice.
    let builder = StreamsBuilder::new();
    builder.stream("in", strings()).to("a", produced());
    builder.stream("in", strings()).to("b", produced());
    let e = builder.build().unwrap_err().to_string();
    assert!(e.contains("topic in is read by two sources"), "{e}");
    let builder = StreamsBuilder::new();
    builder.table("t1", strings(), Materialized::as_("same"));
    builder.table("t2", strings(), Materialized::as_("same"));
    assert!(builder.build().unwrap_err().to_string().contains("store 'same' is added twice"));

    // Exactly-once is refused until transactions exist.
    let mut eos = config();
    eos.set("processing.guarantee", "exactly_once_v2").unwrap();
    let builder = StreamsBuilder::new();
    builder.stream("in", strings()).to("out", produced());
    assert!(TopologyTestDriver::new(builder.build().unwrap(), eos).unwrap_err().to_string().contains("transactions"));

    // Piping into a topic nothing reads.
    let builder = StreamsBuilder::new();
    builder.stream("in", strings()).to("out", produced());
    let d = driver(builder);
    assert!(d.input_topic("nope", Serdes::string(), Serdes::string()).pipe_input(s("k"), s("v")).is_err());
}

struct Suffix2;

impl Processor<String, String, String, String> for Suffix2 {
    fn process(
        &mut self,
        _: &mut ProcessorContext<'_, String, String>,
        _: Record<String, String>,
    ) -> freshet_streams::Result<()> {
        Ok(())
    }
}

#[test]
fn undeserializable_records_go_to_the_handler() {
    let build = || {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", Consumed::with(Serdes::string(), Serdes::i64()))
            .group_by_key(Grouped::with(Serdes::string(), Serdes::i64()))
            .count(Materialized::as_("n").with_caching(false));
        builder.build().unwrap()
    };
    // Log and continue: skipped and counted, later records still processed.
    let mut c = config();
    c.set("default.deserialization.exception.handler", "log-and-continue").unwrap();
    let d = TopologyTestDriver::new(build(), c).unwrap();
    let pipe = d.input_topic("in", Serdes::string(), Serdes::i64());
    pipe.pipe_raw(Some("k".into()), Some(vec![1, 2, 3].into()), 0, Vec::new()).unwrap();
    pipe.pipe_raw(Some(vec![0xff].into()), Some(vec![0; 8].into()), 0, Vec::new()).unwrap();
    pipe.pipe_input(s("k"), 1).unwrap();
    assert_eq!(d.skipped_records(), 2);
    assert_eq!(d.key_value_store::<String, i64>("n").unwrap().get(&s("k")).unwrap(), Some(1));
    // Log and fail (the default): an error naming the record.
    let d = TopologyTestDriver::new(build(), config()).unwrap();
    let pipe = d.input_topic("in", Serdes::string(), Serdes::i64());
    pipe.pipe_input(s("k"), 1).unwrap();
    let e = pipe.pipe_raw(Some("k".into()), Some(vec![1, 2, 3].into()), 0, Vec::new()).unwrap_err().to_string();
    assert!(e.contains("in-0@1") && e.contains("3 bytes, expected 8"), "{e}");
    // A null key where the serde does not allow one.
    let e = pipe.pipe_raw(None, Some(vec![0; 8].into()), 0, Vec::new()).unwrap_err().to_string();
    assert!(e.contains("Serdes::optional"), "{e}");
}

#[test]
fn aggregations_skip_null_keys() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Serdes::optional(Serdes::string()), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::optional(Serdes::string()), Serdes::string()))
        .count(Materialized::as_("n").with_caching(false));
    let d = driver(builder);
    let pipe = d.input_topic("in", Serdes::optional(Serdes::string()), Serdes::string());
    pipe.pipe_input(None, s("x")).unwrap();
    pipe.pipe_input(Some(s("k")), s("x")).unwrap();
    assert_eq!(d.skipped_records(), 1);
    assert_eq!(d.key_value_store::<Option<String>, i64>("n").unwrap().get(&Some(s("k"))).unwrap(), Some(1));
}

#[test]
fn describe_prints_sub_topologies_like_kafka() {
    let builder = StreamsBuilder::new();
    wordcount(&builder, Materialized::as_("counts-store"));
    let text = builder.build().unwrap().describe();
    assert!(text.contains("Sub-topology: 0"), "{text}");
    assert!(text.contains("Source: KSTREAM-SOURCE-0000000000 (topics: [lines])"), "{text}");
    assert!(
        text.contains("Sink: KSTREAM-SINK-0000000003 (topic: <application.id>-counts-store-repartition)"),
        "{text}"
    );
    assert!(text.contains("(stores: [counts-store])"), "{text}");
}

#[test]
fn several_topics_and_a_pattern_feed_one_stream() {
    let builder = StreamsBuilder::new();
    builder.stream_topics(&["a", "b"], strings()).map_values(|v| v + "!").to("ab", produced());
    builder.stream_pattern(regex::Regex::new("^logs-[0-9]+$").unwrap(), strings()).to("logs", produced());
    let d = driver(builder);
    d.input_topic("a", Serdes::string(), Serdes::string()).pipe_input(s("k1"), s("from a")).unwrap();
    d.input_topic("b", Serdes::string(), Serdes::string()).pipe_input(s("k2"), s("from b")).unwrap();
    d.input_topic("logs-1", Serdes::string(), Serdes::string()).pipe_input(s("k3"), s("one")).unwrap();
    d.input_topic("logs-22", Serdes::string(), Serdes::string()).pipe_input(s("k4"), s("two")).unwrap();
    // Matches no source: nothing reads it.
    d.input_topic("logs-x", Serdes::string(), Serdes::string()).pipe_input(s("k5"), s("no")).unwrap_err();
    let out = |t: &str| d.output_topic(t, Serdes::string(), Serdes::string()).read_key_values().unwrap();
    assert_eq!(out("ab"), vec![(s("k1"), s("from a!")), (s("k2"), s("from b!"))]);
    assert_eq!(out("logs"), vec![(s("k3"), s("one")), (s("k4"), s("two"))]);
}

/// Takes the event time from the value's `@<ms>` suffix; a value without one is skipped.
struct AtSuffix;

impl freshet_streams::TimestampExtractor for AtSuffix {
    fn extract(&self, record: &freshet_log::client::ConsumerRecord, _partition_time: i64) -> i64 {
        let value = record.value.as_deref().unwrap_or_default();
        let value = std::str::from_utf8(value).unwrap_or_default();
        value.rsplit_once('@').and_then(|(_, ms)| ms.parse().ok()).unwrap_or(-1)
    }
}

#[test]
fn a_custom_timestamp_extractor_sets_event_time_and_negative_times_are_skipped() {
    let builder = StreamsBuilder::new();
    builder.stream("in", strings().with_timestamp_extractor(AtSuffix)).to("out", produced());
    let d = driver(builder);
    let pipe = d.input_topic("in", Serdes::string(), Serdes::string());
    pipe.pipe_raw(Some("k".into()), Some("clicked@5000".into()), 1, Vec::new()).unwrap();
    pipe.pipe_raw(Some("k".into()), Some("no time".into()), 2, Vec::new()).unwrap();
    let out = d.output_topic("out", Serdes::string(), Serdes::string());
    let record = out.read_record().unwrap().unwrap();
    assert_eq!((record.value.as_str(), record.timestamp), ("clicked@5000", 5000));
    assert!(out.read_record().unwrap().is_none(), "the record without a time is skipped");
    assert_eq!(d.skipped_records(), 1);
}

#[test]
fn materialized_turns_logging_off() {
    let builder = StreamsBuilder::new();
    let grouped = builder.stream("in", strings()).group_by_key(Grouped::with(Serdes::string(), Serdes::string()));
    grouped.count(Materialized::as_("logged").with_caching(false));
    grouped.count(Materialized::as_("unlogged").with_caching(false).with_logging(false));
    let d = driver(builder);
    let pipe = d.input_topic("in", Serdes::string(), Serdes::string());
    pipe.pipe_input(s("k"), s("x")).unwrap();
    pipe.pipe_input(s("k"), s("y")).unwrap();
    let changelog = |store: &str| {
        d.output_topic(&format!("app-{store}-changelog"), Serdes::string(), Serdes::i64()).read_key_values().unwrap()
    };
    assert_eq!(changelog("logged"), vec![(s("k"), 1), (s("k"), 2)]);
    assert!(changelog("unlogged").is_empty(), "no changelog writes with logging off");
    assert_eq!(d.key_value_store::<String, i64>("unlogged").unwrap().get(&s("k")).unwrap(), Some(2));
}

/// Remembers where each bad record was, and lets processing go on.
#[derive(Debug, Default)]
struct Remember(Mutex<Vec<(String, i64)>>);

impl freshet_streams::DeserializationExceptionHandler for Remember {
    fn handle(
        &self,
        record: &freshet_log::client::ConsumerRecord,
        _error: &freshet_log::client::serde::SerdeError,
    ) -> freshet_streams::DeserializationResponse {
        self.0.lock().push((record.topic.to_string(), record.offset));
        freshet_streams::DeserializationResponse::Continue
    }
}

#[test]
fn a_user_defined_deserialization_handler_sees_each_bad_record() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Serdes::string(), Serdes::i64()))
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let handler = Arc::new(Remember::default());
    let mut c = config();
    c.deserialization_handler = freshet_streams::DeserializationHandler(handler.clone());
    let d = TopologyTestDriver::new(builder.build().unwrap(), c).unwrap();
    let pipe = d.input_topic("in", Serdes::string(), Serdes::i64());
    pipe.pipe_input(s("a"), 1).unwrap();
    pipe.pipe_raw(Some("b".into()), Some(vec![1, 2].into()), 0, Vec::new()).unwrap();
    pipe.pipe_input(s("c"), 3).unwrap();
    assert_eq!(*handler.0.lock(), vec![(s("in"), 1)]);
    let out = d.output_topic("out", Serdes::string(), Serdes::i64()).read_key_values().unwrap();
    assert_eq!(out, vec![(s("a"), 1), (s("c"), 3)]);
}

#[test]
fn repartition_without_a_name_or_count_uses_a_generated_topic() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", strings())
        .select_key(|_, v| v.clone())
        .repartition(Repartitioned::with(Serdes::string(), Serdes::string()))
        .to("out", produced());
    let topology = builder.build().unwrap();
    let described = topology.describe();
    assert!(described.contains("-repartition"), "{described}");
    let d = TopologyTestDriver::new(topology, config()).unwrap();
    d.input_topic("in", Serdes::string(), Serdes::string()).pipe_input(s("k"), s("v")).unwrap();
    let out = d.output_topic("out", Serdes::string(), Serdes::string()).read_key_values().unwrap();
    assert_eq!(out, vec![(s("v"), s("v"))]);
}
