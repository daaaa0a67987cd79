//! The `reflex` command line (SPEC §4): argument parsing, dispatch to
//! [`reflex::cli`] (one function per subcommand) and the one mapping from
//! an error's kind to the exit code (0 ok, 2 bad usage or configuration, 1
//! runtime failure).

use clap::{Parser, Subcommand};
use reflex::cli::{self, executor, run, topics, CliError, Kind};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "reflex", version, about = "Self-healing stream processor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create the missing topics; report the ones that differ from the file.
    Apply {
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// Configuration file (topic prefix / overrides from `[kafka]`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Topics file (default: the embedded topology/topics.toml).
        #[arg(long)]
        topics: Option<PathBuf>,
        /// Override every topic's replication factor (single-broker dev clusters).
        #[arg(long)]
        replication: Option<i32>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Process events: embedded mode reads JSON Lines and writes one file per topic.
    Run {
        /// Configuration file (default: the embedded topology/reflex.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON Lines input file, or `-` for stdin.
        #[arg(long, default_value = "-")]
        input: PathBuf,
        /// Where `<topic>.jsonl` files are written.
        #[arg(long, default_value = "out")]
        output_dir: PathBuf,
        /// Serve /metrics, /health, /ready, /api/incidents and /api/stream on
        /// this address (`HOST:PORT`; port 0 picks a free one, printed on stderr).
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// After end of input, keep serving HTTP until SIGTERM or ctrl-c.
        #[arg(long)]
        hold: bool,
        /// Kafka mode: bootstrap servers (`HOST:PORT[,...]`); runs until SIGTERM.
        #[arg(long)]
        brokers: Option<String>,
        /// Kafka mode: which stage this process runs (detect, decide or all).
        #[arg(long, default_value = "all", requires = "brokers")]
        stage: String,
        /// Embedded mode: JSON Lines of ActionResults (e.g. `reflex demo
        /// --export`'s `action-results.jsonl`) applied in event time, so a
        /// replay reproduces the live run's verification and ladders.
        #[arg(long, value_name = "FILE", conflicts_with = "brokers")]
        action_results: Option<PathBuf>,
    },
    /// Topics as code (topology/topics.toml).
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Check the configuration, rules and schemas; report every problem at once.
    Validate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Score one metric series with the streaming anomaly detector (CSV `timestamp,value`).
    Anomalies {
        #[arg(long)]
        input: PathBuf,
        /// Output CSV `timestamp,value,anomaly_score` (default stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Mine log templates from a text file, one message per line (CSV `LineId,EventId,EventTemplate`).
    Templates {
        /// Input file, or `-` for stdin.
        #[arg(long)]
        input: PathBuf,
        /// Output CSV (default stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Run a simulated fleet with injected faults through the whole loop, narrated, ending in a report.
    Demo {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Faults to inject (default 11 for demo, covering every category; 12 for production).
        #[arg(long)]
        faults: Option<usize>,
        /// Simulated hours (default 8 for demo, 7 for production).
        #[arg(long)]
        hours: Option<f64>,
        /// Fleet profile: `demo` (small fleet, isolated steady noise) or
        /// `production` (36 services, chronic background on every edge,
        /// overlapping and intermittent faults).
        #[arg(long, default_value = "demo")]
        profile: String,
        /// Write events.jsonl (replayable with `reflex run`), truth.jsonl and demo-out/ here.
        #[arg(long)]
        export: Option<PathBuf>,
        #[command(flatten)]
        live: DemoLive,
    },
    /// The value report of an embedded run (`reflex run --output-dir` or `reflex demo --export`).
    Report(cli::report::ReportCommand),
    /// Fit the category classifier from labelled incidents (LABELLED.jsonl) and write the model file.
    Train {
        /// Labelled incidents, one JSON object per line: {"category", "root_cause_service", "events": [...]}.
        #[arg(long)]
        input: PathBuf,
        /// Model file to write (use it with `diagnosis.model = "PATH"`).
        #[arg(long, default_value = "category-model.json")]
        output: PathBuf,
        /// Configuration whose signature rules compute the rule features (default: embedded).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Carry out actions (`kube`) or deliver escalations (`webhook`) from Kafka, publishing ActionResults.
    Executor {
        #[command(subcommand)]
        kind: ExecutorKind,
    },
    /// Write a generated event stream (a small fleet with injected faults) as JSON Lines.
    Generate {
        /// Approximate number of events.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (default stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// `reflex demo`'s live options: the ops API with the incident board, pacing.
#[derive(clap::Args)]
struct DemoLive {
    /// Serve the incident board (`/`), /api/stream, /api/report, /metrics and
    /// approvals (`REFLEX_API_TOKEN`) on this address while the demo runs.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Simulated seconds per wall-clock second after the warm-up (e.g. 30);
    /// default: as fast as possible.
    #[arg(long)]
    speed: Option<f64>,
    /// After the demo, keep serving HTTP until SIGTERM or ctrl-c.
    #[arg(long, requires = "http")]
    hold: bool,
    /// Configuration file (default: the embedded topology/reflex.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ExecutorKind {
    /// Consume `reflex.actions` and act through the Kubernetes API (in-cluster config or kubeconfig).
    Kube {
        #[command(flatten)]
        common: ExecutorArgs,
        /// Log and report what would be done without touching the cluster.
        #[arg(long)]
        dry_run: bool,
    },
    /// Consume `reflex.escalations` and POST them to the configured webhook URLs.
    Webhook {
        #[command(flatten)]
        common: ExecutorArgs,
    },
}

#[derive(clap::Args)]
struct ExecutorArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "REFLEX_BROKERS")]
    brokers: String,
    /// Executor configuration file (`[executor]`; default: allow nothing).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Consumer group id (default: `[executor.kafka] group_id`, else `reflex-executor-<kind>`).
    #[arg(long)]
    group_id: Option<String>,
    /// Serve `/healthz` and `/readyz` for probes on this address (e.g. `0.0.0.0:8080`).
    #[arg(long)]
    health_addr: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let result = dispatch(Cli::parse().command);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.eprint();
            exit_code(&e)
        }
    }
}

/// The one place an error becomes an exit code.
fn exit_code(e: &CliError) -> ExitCode {
    match e.kind() {
        Kind::Usage => ExitCode::from(2),
        Kind::External | Kind::Internal => ExitCode::from(1),
    }
}

fn dispatch(command: Command) -> Result<(), CliError> {
    match command {
        Command::Run {
            config,
            brokers: Some(brokers),
            stage,
            http,
            ..
        } => run::kafka(run::KafkaArgs {
            config,
            brokers,
            stage,
            http,
        }),
        Command::Run {
            config,
            input,
            output_dir,
            http,
            hold,
            action_results,
            ..
        } => run::embedded(run::EmbeddedArgs {
            config,
            input,
            output_dir,
            http,
            hold,
            action_results,
        }),
        Command::Topics {
            command:
                TopicsCommand::Apply {
                    brokers,
                    config,
                    topics,
                    replication,
                },
        } => topics::apply(topics::ApplyArgs {
            brokers,
            config,
            topics,
            replication,
        }),
        Command::Validate { config } => cli::tools::validate(config),
        Command::Anomalies { input, output } => cli::tools::anomalies(input, output),
        Command::Templates { input, output } => cli::tools::templates(input, output),
        Command::Demo {
            seed,
            faults,
            hours,
            profile,
            export,
            live,
        } => cli::demo::run(cli::demo::DemoArgs {
            seed,
            faults,
            hours,
            profile,
            export,
            http: live.http,
            speed: live.speed,
            hold: live.hold,
            config: live.config,
        }),
        Command::Report(cmd) => cli::report::run(&cmd).map(drop),
        Command::Train {
            input,
            output,
            config,
        } => cli::tools::train(input, output, config),
        Command::Generate {
            events,
            seed,
            output,
        } => cli::tools::generate(events, seed, output),
        Command::Executor { kind } => {
            let (common, kind) = match kind {
                ExecutorKind::Kube { common, dry_run } => {
                    (common, executor::ExecutorKind::Kube { dry_run })
                }
                ExecutorKind::Webhook { common } => (common, executor::ExecutorKind::Webhook),
            };
            executor::run(executor::ExecutorArgs {
                kind,
                brokers: common.brokers,
                config: common.config,
                group_id: common.group_id,
                health_addr: common.health_addr,
            })
        }
    }
}
