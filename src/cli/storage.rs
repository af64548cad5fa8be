//! `freshet storage`: Kafka's `kafka-storage.sh` for operators who format data directories
//! explicitly. (`freshet server` formats a new, empty directory by itself.)

use freshet::log::storage::MetaProperties;
use freshet::log::storage::meta_properties::random_uuid;

use super::server::ConfigArgs;

/// `freshet storage ...`
#[derive(Debug, clap::Subcommand)]
pub enum StorageCommand {
    /// Write meta.properties into the node's data directory (log.dirs) for a cluster id.
    Format {
        /// The cluster id, e.g. from `freshet storage random-uuid`; the same for every node.
        #[arg(long = "cluster-id", short = 't')]
        cluster_id: String,
        /// Succeed without change when the directory is already formatted the same way.
        #[arg(long = "ignore-formatted", short = 'g')]
        ignore_formatted: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print a new random cluster id.
    RandomUuid,
    /// Print the cluster id, node id and directory id of the node's data directory.
    Info {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn run(cmd: StorageCommand) -> anyhow::Result<()> {
    match cmd {
        StorageCommand::RandomUuid => println!("{}", random_uuid()),
        StorageCommand::Format { cluster_id, ignore_formatted, config } => {
            let config = config.load()?;
            config.validate()?;
            let dir = config.data_dir();
            let meta = MetaProperties::format(dir, &cluster_id, config.node_id, ignore_formatted)?;
            println!("Formatted {} for cluster {} as node {}", dir.display(), meta.cluster_id, meta.node_id);
        }
        StorageCommand::Info { config } => {
            let config = config.load()?;
            let dir = config.data_dir();
            match MetaProperties::load(dir)? {
                Some(meta) => println!(
                    "{}: cluster.id={} node.id={} directory.id={}",
                    dir.display(),
                    meta.cluster_id,
                    meta.node_id,
                    meta.directory_id
                ),
                None => anyhow::bail!("{} is not formatted (no meta.properties)", dir.display()),
            }
        }
    }
    Ok(())
}
