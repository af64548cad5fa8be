//! `freshet consume TOPIC`: prints records with a kcat-style format string.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use freshet::client::{Consumer, ConsumerRecord, TopicPartition};

use super::client::{ClusterArgs, partitions_of, runtime};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("start").args(["from_beginning", "offset", "from_timestamp", "from_end"])))]
pub struct ConsumeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic.
    topic: String,
    /// Only these partitions (repeatable; default: all).
    #[arg(short, long = "partition")]
    partitions: Vec<i32>,
    /// Start at the log start.
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset in every partition; negative counts back from the end.
    #[arg(long, allow_negative_numbers = true)]
    offset: Option<i64>,
    /// Start at the first record at or after this time (ms since the epoch).
    #[arg(long, value_name = "MS")]
    from_timestamp: Option<i64>,
    /// Start at the log end: only new records (the default).
    #[arg(long)]
    from_end: bool,
    /// Output format: %t topic, %p partition, %o offset, %k key, %s value, %K key length,
    /// %S value length, %T timestamp, %h headers, %% a percent sign; \n \t \\ escapes.
    #[arg(short = 'f', long, default_value = "%s\\n")]
    format: String,
    /// Exit after this many records.
    #[arg(short = 'c', long)]
    count: Option<u64>,
    /// Exit when every partition has been read to the end it had at start.
    #[arg(short = 'e', long, conflicts_with = "group")]
    exit_at_end: bool,
    /// Consume as a member of this consumer group: partitions are shared with the group's
    /// other members, reading starts at the group's committed offsets, and the offsets of
    /// printed records are committed.
    #[arg(short = 'G', long, conflicts_with_all = ["partitions", "offset", "from_timestamp"])]
    group: Option<String>,
}

/// A compiled format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Text(String),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    KeyLength,
    ValueLength,
    Timestamp,
    Headers,
}

/// Compiles a kcat-style format; an unknown `%x` is an error naming it.
pub fn parse_format(format: &str) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        let token = match c {
            '%' => match chars.next() {
                Some('t') => Token::Topic,
                Some('p') => Token::Partition,
                Some('o') => Token::Offset,
                Some('k') => Token::Key,
                Some('s') => Token::Value,
                Some('K') => Token::KeyLength,
                Some('S') => Token::ValueLength,
                Some('T') => Token::Timestamp,
                Some('h') => Token::Headers,
                Some('%') => {
                    text.push('%');
                    continue;
                }
                other => anyhow::bail!(
                    "--format {format:?}: unknown token %{}",
                    other.map_or_else(String::new, String::from)
                ),
            },
            '\\' => {
                match chars.next() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('r') => text.push('\r'),
                    Some('0') => text.push('\0'),
                    Some('\\') => text.push('\\'),
                    Some(other) => {
                        text.push('\\');
                        text.push(other);
                    }
                    None => text.push('\\'),
                }
                continue;
            }
            c => {
                text.push(c);
                continue;
            }
        };
        if !text.is_empty() {
            tokens.push(Token::Text(std::mem::take(&mut text)));
        }
        tokens.push(token);
    }
    if !text.is_empty() {
        tokens.push(Token::Text(text));
    }
    Ok(tokens)
}

/// Writes one record as the format says.
pub fn render(tokens: &[Token], record: &ConsumerRecord, out: &mut impl Write) -> std::io::Result<()> {
    let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(-1, |b| b.len() as i64);
    for token in tokens {
        match token {
            Token::Text(text) => out.write_all(text.as_bytes())?,
            Token::Topic => out.write_all(record.topic.as_bytes())?,
            Token::Partition => write!(out, "{}", record.partition)?,
            Token::Offset => write!(out, "{}", record.offset)?,
            Token::Key => out.write_all(record.key.as_deref().unwrap_or_default())?,
            Token::Value => out.write_all(record.value.as_deref().unwrap_or_default())?,
            Token::KeyLength => write!(out, "{}", len(&record.key))?,
            Token::ValueLength => write!(out, "{}", len(&record.value))?,
            Token::Timestamp => write!(out, "{}", record.timestamp)?,
            Token::Headers => {
                for (i, (k, v)) in record.headers.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(k.as_bytes())?;
                    out.write_all(b"=")?;
                    out.write_all(v.as_deref().unwrap_or_default())?;
                }
            }
        }
    }
    Ok(())
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let tokens = parse_format(&args.format)?;
    if args.group.is_some() {
        return runtime()?.block_on(consume_in_group(args, tokens));
    }
    runtime()?.block_on(async move {
        let admin = args.cluster.admin().await?;
        let partitions = partitions_of(&admin, &args.topic, &args.partitions).await?;
        let config =
            args.cluster.consumer_config(&[("auto.offset.reset", "latest"), ("enable.auto.commit", "false")])?;
        let mut consumer =
            Consumer::connect(config).await.with_context(|| format!("connecting to {}", args.cluster.bootstrap))?;
        consumer.assign(&partitions).await?;
        if args.from_beginning {
            consumer.seek_to_beginning(&partitions)?;
        } else if let Some(offset) = args.offset {
            for tp in &partitions {
                let target = if offset >= 0 {
                    offset
                } else {
                    let (low, high) = consumer.watermarks(tp).await?;
                    (high + offset).max(low)
                };
                consumer.seek(tp, target)?;
            }
        } else if let Some(ts) = args.from_timestamp {
            let times: Vec<_> = partitions.iter().map(|tp| (tp.clone(), ts)).collect();
            let found = consumer.offsets_for_times(&times).await?;
            for tp in &partitions {
                match found.get(tp).copied().flatten() {
                    Some(at) => consumer.seek(tp, at.offset)?,
                    None => consumer.seek_to_end(std::slice::from_ref(tp))?,
                }
            }
        } else {
            consumer.seek_to_end(&partitions)?;
        }
        // Where "the end" is, for --exit-at-end: the log end when we started.
        let mut remaining: HashMap<_, i64> = HashMap::new();
        if args.exit_at_end {
            for tp in &partitions {
                let end = consumer.watermarks(tp).await?.1;
                if consumer.position(tp).await? < end {
                    remaining.insert(tp.clone(), end);
                }
            }
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut printed = 0u64;
        loop {
            if args.exit_at_end && remaining.is_empty() || args.count.is_some_and(|n| printed >= n) {
                break;
            }
            let records = consumer.poll(Duration::from_millis(500)).await?;
            for record in records.iter() {
                render(&tokens, record, &mut out)?;
                printed += 1;
                let tp = TopicPartition::new(record.topic.to_string(), record.partition);
                if remaining.get(&tp).is_some_and(|end| record.offset + 1 >= *end) {
                    remaining.remove(&tp);
                }
                if args.count.is_some_and(|n| printed >= n) {
                    break;
                }
            }
            out.flush()?;
        }
        out.flush()?;
        eprintln!("Consumed {printed} records.");
        anyhow::Ok(())
    })
}

/// `--group`: subscribe as a group member, print, and commit what was printed.
async fn consume_in_group(args: ConsumeArgs, tokens: Vec<Token>) -> anyhow::Result<()> {
    let group = args.group.clone().unwrap_or_default();
    let reset = if args.from_beginning { "earliest" } else { "latest" };
    let config = args.cluster.consumer_config(&[
        ("group.id", group.as_str()),
        ("auto.offset.reset", reset),
        ("enable.auto.commit", "false"),
    ])?;
    let mut consumer =
        Consumer::connect(config).await.with_context(|| format!("connecting to {}", args.cluster.bootstrap))?;
    consumer.subscribe(&[args.topic.as_str()]).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    while args.count.is_none_or(|n| printed < n) {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        // Only what was printed is committed: records past --count stay for the next reader.
        let mut next: HashMap<TopicPartition, i64> = HashMap::new();
        for record in records.iter() {
            if args.count.is_some_and(|n| printed >= n) {
                break;
            }
            render(&tokens, record, &mut out)?;
            printed += 1;
            next.insert(TopicPartition::new(record.topic.to_string(), record.partition), record.offset + 1);
        }
        out.flush()?;
        if !next.is_empty() {
            let offsets: Vec<_> = next.into_iter().map(|(tp, o)| (tp, o, None)).collect();
            consumer.commit_offsets_sync(&offsets).await?;
        }
    }
    consumer.close().await?;
    eprintln!("Consumed {printed} records.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_render_like_kcat() {
        let tokens = parse_format("%t/%p@%o %k=%s (%K,%S) %T [%h] 100%%\\n").unwrap();
        let record = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp: 1_700_000_000_000,
            timestamp_type: freshet::log::record::TimestampType::CreateTime,
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: vec![("a".into(), Some(bytes::Bytes::from_static(b"1"))), ("b".into(), None)],
            leader_epoch: None,
        };
        let mut out = Vec::new();
        render(&tokens, &record, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "t/2@7 =v (-1,1) 1700000000000 [a=1,b=] 100%\n");
        let e = parse_format("%s %x").unwrap_err();
        assert!(e.to_string().contains("unknown token %x"), "{e}");
    }
}
