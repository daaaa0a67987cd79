//! The `reflex` command line (SPEC §4). `anyhow` lives here only; every
//! subcommand is one function returning the exit code.

use anyhow::Context;
use clap::{Parser, Subcommand};
use reflex::config::Config;
use reflex::pipeline::embedded::{self, DecideOptions};
use reflex::pipeline::kafka::{self, KafkaOptions, StageSel};
use reflex::sinks::file::FileSink;
use reflex::sources::file::LineReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    Report {
        /// The output directory (or a demo export, whose records are in demo-out/).
        #[arg(long)]
        input: PathBuf,
        /// Executor results (default: action-results.jsonl in the directory, if any).
        #[arg(long, value_name = "FILE")]
        action_results: Option<PathBuf>,
        /// Only incidents from this event time (RFC 3339, epoch ms, or e.g. `24h` before the last record).
        #[arg(long)]
        since: Option<String>,
        /// `text`, `json` or `html` (a self-contained page with inline SVG charts).
        #[arg(long, default_value = "text")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Human minutes one manual fix takes (for minutes saved).
        #[arg(long, default_value_t = 30.0)]
        minutes_per_fix: f64,
        /// Human minutes an approval still takes.
        #[arg(long, default_value_t = 5.0)]
        minutes_per_approval: f64,
        /// Held-back incidents stated below this confidence count as low confidence.
        #[arg(long, default_value_t = 0.7)]
        low_confidence: f64,
    },
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            brokers: Some(brokers),
            stage,
            http,
            ..
        } => cmd_run_kafka(config, brokers, stage, http),
        Command::Run {
            config,
            input,
            output_dir,
            http,
            hold,
            action_results,
            ..
        } => cmd_run(config, input, output_dir, http, hold, action_results),
        Command::Topics {
            command:
                TopicsCommand::Apply {
                    brokers,
                    config,
                    topics,
                    replication,
                },
        } => cmd_topics_apply(brokers, config, topics, replication),
        Command::Validate { config } => cmd_validate(config),
        Command::Anomalies { input, output } => cmd_anomalies(input, output),
        Command::Templates { input, output } => cmd_templates(input, output),
        Command::Demo {
            seed,
            faults,
            hours,
            profile,
            export,
            live,
        } => cmd_demo(seed, faults, hours, &profile, export, live),
        Command::Report {
            input,
            action_results,
            since,
            format,
            output,
            minutes_per_fix,
            minutes_per_approval,
            low_confidence,
        } => cmd_report(reflex::report::cli::ReportCommand {
            input,
            action_results,
            since,
            format: match reflex::report::cli::Format::parse(&format) {
                Some(f) => f,
                None => {
                    eprintln!("reflex: --format {format:?}: expected text, json or html");
                    return ExitCode::from(2);
                }
            },
            output,
            minutes_per_fix,
            minutes_per_approval,
            low_confidence,
        }),
        Command::Train {
            input,
            output,
            config,
        } => cmd_train(input, output, config),
        Command::Generate {
            events,
            seed,
            output,
        } => cmd_generate(events, seed, output),
        Command::Executor { kind } => cmd_executor(kind),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reflex: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::load(path.as_deref()).map_err(|e| {
        eprint!("reflex: {e}");
        ExitCode::from(2)
    })
}

fn decide_options() -> DecideOptions {
    DecideOptions {
        signing_key: std::env::var("REFLEX_ACTION_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(String::into_bytes),
        healing_env_off: std::env::var("REFLEX_HEALING").is_ok_and(|v| {
            v.eq_ignore_ascii_case("off") || v == "0" || v.eq_ignore_ascii_case("false")
        }),
        action_results: Vec::new(),
    }
}

/// Telemetry of one process: the shared counters, the HTTP server and OTLP
/// export (a small runtime exists only when one of those two is on).
struct TelemetryRun {
    telemetry: Arc<reflex::telemetry::Telemetry>,
    rt: Option<tokio::runtime::Runtime>,
    guard: Option<reflex::telemetry::otel::OtelGuard>,
    serving: bool,
}

/// Sets up logging, OTLP export and the HTTP server from `[telemetry]`,
/// `--http` and the environment. `Err(code)` is a usage/config error.
fn start_telemetry(
    cfg: &Config,
    http: Option<String>,
    readiness: reflex::telemetry::Readiness,
) -> anyhow::Result<Result<TelemetryRun, ExitCode>> {
    use reflex::telemetry::{logging, otel, server, Telemetry};
    let tcfg = &cfg.telemetry;
    let format = tcfg.effective_log_format(std::env::var("REFLEX_LOG_FORMAT").ok().as_deref());
    // An embedding program may have installed its own subscriber: keep it.
    let _ = logging::init(format);
    let http = http.or_else(|| tcfg.http_listen.clone());
    let http_addr: Option<std::net::SocketAddr> = match http.as_deref().map(str::parse) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => {
            eprintln!(
                "reflex: --http {:?} is not an address like 127.0.0.1:9464",
                http.unwrap_or_default()
            );
            return Ok(Err(ExitCode::from(2)));
        }
    };
    let otlp =
        tcfg.effective_otlp_endpoint(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().as_deref());
    let telemetry = Arc::new(Telemetry::new(Arc::default(), readiness, tcfg));
    let token = match std::env::var("REFLEX_API_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().as_bytes().to_vec()),
        _ => match &tcfg.api_token_file {
            Some(f) => match std::fs::read_to_string(f) {
                Ok(t) => Some(t.trim().as_bytes().to_vec()),
                Err(e) => {
                    eprintln!("reflex: telemetry.api_token_file: cannot read {f}: {e}");
                    return Ok(Err(ExitCode::from(2)));
                }
            },
            None => None,
        },
    };
    telemetry.set_api_token(token);
    let rt = if http_addr.is_some() || otlp.is_some() {
        Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("reflex-telemetry")
                .enable_all()
                .build()
                .context("starting the telemetry runtime")?,
        )
    } else {
        None
    };
    let mut guard = None;
    if let (Some(rt), Some(endpoint)) = (&rt, &otlp) {
        let built = rt.block_on(async {
            otel::init(
                endpoint,
                &tcfg.service_name,
                telemetry.stats.clone(),
                telemetry.outputs.clone(),
            )
        });
        let (g, tracer) = match built {
            Ok(b) => b,
            Err(e) if e.kind() == otel::OtelErrorKind::Config => {
                eprintln!("reflex: {e}");
                return Ok(Err(ExitCode::from(2)));
            }
            Err(e) => return Err(anyhow::Error::from(e).context("setting up OTLP export")),
        };
        telemetry.set_tracer(otel::IncidentTracer::new(tracer, tcfg.max_open_incidents));
        tracing::info!(endpoint = %endpoint, "exporting traces and metrics over OTLP/gRPC");
        guard = Some(g);
    }
    if let (Some(rt), Some(addr)) = (&rt, http_addr) {
        let listener = match rt.block_on(tokio::net::TcpListener::bind(addr)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("reflex: cannot listen on {addr}: {e}");
                return Ok(Err(ExitCode::from(2)));
            }
        };
        let local = listener.local_addr().context("reading the bound address")?;
        // A fixed line (not a log record) so scripts can find the port.
        eprintln!("reflex: http listening on {local}");
        rt.spawn(server::serve(listener, telemetry.clone()));
    }
    Ok(Ok(TelemetryRun {
        telemetry,
        rt,
        guard,
        serving: http_addr.is_some(),
    }))
}

impl TelemetryRun {
    /// Flushes exporters; with `hold`, keeps serving HTTP until a signal.
    fn stop(self, hold: bool) {
        self.telemetry.finish();
        if let Some(rt) = self.rt {
            let (guard, serving) = (self.guard, self.serving);
            rt.block_on(async {
                if hold && serving {
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                    eprintln!("reflex: end of input; serving until SIGTERM or ctrl-c");
                    wait_for_shutdown().await;
                }
                if let Some(g) = guard {
                    g.shutdown().await;
                }
            });
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
    }
}

fn cmd_run(
    config: Option<PathBuf>,
    input: PathBuf,
    output_dir: PathBuf,
    http: Option<String>,
    hold: bool,
    action_results: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use reflex::pipeline::embedded::RunHooks;
    use reflex::telemetry::{Readiness, ReadyCondition, TapSink};
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let readiness = Readiness::embedded();
    let tel = match start_telemetry(&cfg, http, readiness.clone())? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let mut opts = decide_options();
    if let Some(p) = &action_results {
        match embedded::load_action_results(p) {
            Ok(v) => opts.action_results = v,
            Err(e) => {
                eprintln!("reflex: --action-results: {e}");
                tel.stop(false);
                return Ok(ExitCode::from(2));
            }
        }
    }
    let reader = match LineReader::open(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("reflex: cannot open input {}: {e}", input.display());
            tel.stop(false);
            return Ok(ExitCode::from(2));
        }
    };
    let mut sink = FileSink::create(&output_dir)
        .with_context(|| format!("creating outputs in {}", output_dir.display()))?;
    let name = input.display().to_string();
    readiness.set(ReadyCondition::Config);
    let hooks = RunHooks {
        stats: tel.telemetry.stats.clone(),
        readiness: Some(readiness),
    };
    let mut tap = TapSink::new(&mut sink, tel.telemetry.clone());
    let result = embedded::run_with(&cfg, &opts, reader, &name, &mut tap, hooks);
    let code = match result {
        Ok(summary) => {
            println!("{summary}");
            println!("  outputs          {}", output_dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reflex: {:#}", anyhow::Error::from(e));
            ExitCode::from(1)
        }
    };
    tel.stop(hold);
    Ok(code)
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REFLEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Sets the flag on SIGTERM or SIGINT (a small runtime on its own thread).
fn shutdown_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    let _ = ready_tx.send(false);
                    return;
                };
                let _ = ready_tx.send(true);
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::info!("Signal received: stopping.");
                f.store(true, Ordering::SeqCst);
            })
        })?;
    if !ready_rx.recv().unwrap_or(false) {
        anyhow::bail!("cannot install signal handlers");
    }
    Ok(flag)
}

fn cmd_run_kafka(
    config: Option<PathBuf>,
    brokers: String,
    stage: String,
    http: Option<String>,
) -> anyhow::Result<ExitCode> {
    let stage: StageSel = match stage.parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("reflex: --stage: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let readiness = reflex::telemetry::Readiness::kafka();
    let tel = match start_telemetry(&cfg, http, readiness.clone())? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    readiness.set(reflex::telemetry::ReadyCondition::Config);
    let opts = KafkaOptions {
        stage,
        brokers,
        decide: decide_options(),
        telemetry: Some(tel.telemetry.clone()),
    };
    let shutdown = shutdown_flag()?;
    let result = kafka::run(&cfg, &opts, shutdown);
    tel.stop(false);
    let summary = result?;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

fn cmd_topics_apply(
    brokers: String,
    config: Option<PathBuf>,
    topics: Option<PathBuf>,
    replication: Option<i32>,
) -> anyhow::Result<ExitCode> {
    init_tracing();
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let (name, text) = match &topics {
        None => (
            "<embedded>/topics.toml".to_string(),
            reflex::topics::EMBEDDED_TOPICS.to_string(),
        ),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (p.display().to_string(), t),
            Err(e) => {
                eprintln!("reflex: cannot read {}: {e}", p.display());
                return Ok(ExitCode::from(2));
            }
        },
    };
    let mut specs = match reflex::topics::parse(&text, &name, &cfg.kafka) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("reflex: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(r) = replication {
        if r < 1 {
            eprintln!("reflex: --replication must be at least 1");
            return Ok(ExitCode::from(2));
        }
        for s in &mut specs {
            s.replication = r;
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(reflex::topics::apply(&brokers, &specs, &cfg.kafka.consumer))?;
    print!("{report}");
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn cmd_validate(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    match load_config(config) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} threshold rule(s), {} signature rule(s), {} catalogued service(s), {} action categories, 7 Avro schemas, {})",
                cfg.source,
                cfg.detectors.threshold.rules.len(),
                cfg.signatures.rules().len(),
                cfg.catalog.services.len(),
                cfg.actions.categories.len(),
                match (&cfg.diagnosis.category_model, cfg.diagnosis.classifier) {
                    (_, false) => "category classifier off".to_string(),
                    (Some(m), true) => format!(
                        "category model {} ({} categories, policy {})",
                        cfg.diagnosis
                            .model
                            .as_ref()
                            .map_or("built-in".to_string(), |p| p.display().to_string()),
                        m.categories.len(),
                        m.policy.as_str()
                    ),
                    (None, true) => "category model missing: rules only".to_string(),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
}

fn cmd_report(cmd: reflex::report::cli::ReportCommand) -> anyhow::Result<ExitCode> {
    use reflex::report::cli::{self, CliErrorKind};
    match cli::run(&cmd) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("reflex: {e}");
            Ok(ExitCode::from(if e.kind == CliErrorKind::Usage {
                2
            } else {
                1
            }))
        }
    }
}

fn cmd_demo(
    seed: u64,
    faults: Option<usize>,
    hours: Option<f64>,
    profile: &str,
    export: Option<PathBuf>,
    live: DemoLive,
) -> anyhow::Result<ExitCode> {
    use reflex::sim::demo::{self, DemoError, DemoOptions, Profile};
    let Some(profile) = Profile::parse(profile) else {
        eprintln!("reflex: unknown --profile {profile:?} (expected demo or production)");
        return Ok(ExitCode::from(2));
    };
    let cfg = match load_config(live.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if live.speed.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        eprintln!("reflex: --speed must be a positive number of simulated seconds per second");
        return Ok(ExitCode::from(2));
    }
    // Live mode: the ops API and the board watch the loop (the narrative
    // stays on stdout; logs below warnings would drown it).
    let tel = if live.http.is_some() || live.speed.is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .try_init();
        let readiness = reflex::telemetry::Readiness::embedded();
        let tel = match start_telemetry(&cfg, live.http, readiness.clone())? {
            Ok(t) => t,
            Err(code) => return Ok(code),
        };
        readiness.set(reflex::telemetry::ReadyCondition::Config);
        readiness.set(reflex::telemetry::ReadyCondition::Pipeline);
        Some(tel)
    } else {
        None
    };
    let defaults = DemoOptions::for_profile(profile);
    let opts = DemoOptions {
        seed,
        faults: faults.unwrap_or(defaults.faults),
        hours: hours.unwrap_or(defaults.hours),
        export: export.clone(),
        observer: tel.as_ref().map(|t| {
            Arc::new(reflex::telemetry::board::live::LiveDemo::new(
                t.telemetry.clone(),
                live.speed,
                demo::START.plus_ms(reflex::sim::faults::WARMUP_MIN * 60_000),
            )) as Arc<dyn reflex::telemetry::board::live::LoopObserver>
        }),
        ..defaults
    };
    let mut stdout = std::io::stdout().lock();
    let code = match demo::run(&cfg, &opts, &mut stdout) {
        Ok(run) => {
            use std::io::Write;
            writeln!(stdout, "\nreport\n{}", run.report)?;
            if profile == Profile::Production {
                writeln!(stdout, "{}", run.report.hostile_summary())?;
            }
            let value = reflex::report::compute(
                &reflex::report::Records::from_outputs(&run.outputs, &run.results),
                &reflex::report::ReportOptions::default(),
            );
            writeln!(
                stdout,
                "\n{}",
                reflex::report::render::text(&value).trim_end()
            )?;
            if let Some(dir) = export {
                writeln!(
                    stdout,
                    "exported {0}/events.jsonl, {0}/action-results.jsonl, {0}/truth.jsonl and {0}/labelled.jsonl (reflex train --input); replay: reflex run --input {0}/events.jsonl --action-results {0}/action-results.jsonl --output-dir OUT (compare with {0}/demo-out)",
                    dir.display()
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(DemoError::Usage(m)) => {
            eprintln!("reflex: {m}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    };
    drop(stdout);
    if let Some(t) = tel {
        t.stop(live.hold);
    }
    code
}

fn cmd_train(input: PathBuf, output: PathBuf, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use reflex::diagnosis::classify::{self, TrainError};
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let started = std::time::Instant::now();
    let labelled = match classify::read_labelled(&input) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("reflex: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let examples: Vec<_> = labelled
        .iter()
        .flat_map(|l| classify::examples_from_labelled(l, &cfg.signatures))
        .collect();
    let (model, report) = match classify::train(&examples, classify::DEFAULT_HASH_DIMS) {
        Ok(m) => m,
        Err(e @ (TrainError::Data(_) | TrainError::Input { .. } | TrainError::Io { .. })) => {
            eprintln!("reflex: {}: {e}", input.display());
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let json = serde_json::to_string(&model)?;
    std::fs::write(&output, json.as_bytes())
        .with_context(|| format!("writing {}", output.display()))?;
    let s = &report.summary;
    println!(
        "reflex train: {} labelled incidents, {} categories, alpha {}, {:.1}s",
        s.examples,
        s.per_category.len(),
        s.alpha,
        started.elapsed().as_secs_f64()
    );
    for (c, n) in &s.per_category {
        println!("  {c:<20} {n}");
    }
    println!("held-out (5-fold) category accuracy per policy:");
    for (p, a) in &s.held_out_accuracy {
        println!(
            "  {p:<24} {:.3}{}",
            a,
            if *p == report.policy.as_str() {
                "  <- chosen"
            } else {
                ""
            }
        );
    }
    println!("reliability of the chosen answers the rules agree with (bin: n, mean p, accuracy):");
    for (b, n, p, a) in &report.reliability {
        println!(
            "  {:.1}-{:.1}: {n:>4}  {p:.3}  {a:.3}",
            *b as f64 / 10.0,
            (*b + 1) as f64 / 10.0
        );
    }
    println!(
        "calibration agree    {:?}\ncalibration disagree {:?}\nBrier score {:.4}",
        model.calibration.agree, model.calibration.disagree, s.brier
    );
    println!("wrote {} ({} bytes)", output.display(), json.len());
    Ok(ExitCode::SUCCESS)
}

fn cmd_generate(events: u64, seed: u64, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use reflex::sim::gen::{generate, to_jsonl, Fault, GenConfig};
    // Background noise of 5 services at `rate` ev/s over `duration` ≈ events.
    let duration_ms: i64 = 6 * 3_600_000;
    let mut cfg = GenConfig::shop(seed, duration_ms);
    cfg.noise_rate = (events as f64 / 5.0) / (duration_ms as f64 / 1000.0);
    cfg.faults.push(Fault {
        service: "payments".into(),
        start: cfg.start.plus_ms(2 * 3_600_000),
        duration_ms: 10 * 60_000,
        rate: (cfg.noise_rate * 20.0).max(2.0),
        message: "java.lang.OutOfMemoryError: Java heap space at {id}".into(),
        error_type: Some("java.lang.OutOfMemoryError".into()),
        with_deploy: false,
    });
    let evs = generate(&cfg);
    let bytes = to_jsonl(&evs);
    match output {
        Some(p) => std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn input_missing(input: &std::path::Path) -> bool {
    input.as_os_str() != "-" && !input.exists()
}

fn cmd_anomalies(input: PathBuf, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use reflex::detectors::anomaly::cli::{run_csv, AnomalyCliErrorKind};
    use reflex::detectors::anomaly::AnomalyConfig;
    if input_missing(&input) {
        eprintln!("reflex: input {} does not exist", input.display());
        return Ok(ExitCode::from(2));
    }
    let started = std::time::Instant::now();
    match run_csv(&input, output.as_deref(), &AnomalyConfig::default()) {
        Ok(s) => {
            eprintln!(
                "reflex anomalies: {} rows, {} at or above the alert level, {:.0} rows/s",
                s.rows,
                s.alerts,
                s.rows as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == AnomalyCliErrorKind::BadInput => {
            eprintln!("reflex: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

fn cmd_templates(input: PathBuf, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use reflex::detectors::pattern::cli::{run_file, TemplatesCliErrorKind};
    use reflex::detectors::pattern::config::MinerConfig;
    if input_missing(&input) {
        eprintln!("reflex: input {} does not exist", input.display());
        return Ok(ExitCode::from(2));
    }
    let started = std::time::Instant::now();
    match run_file(&input, output.as_deref(), &MinerConfig::default()) {
        Ok(s) => {
            eprintln!(
                "reflex templates: {} lines, {} templates, {:.0} lines/s",
                s.lines,
                s.templates,
                s.lines as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == TemplatesCliErrorKind::Input => {
            eprintln!("reflex: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

fn cmd_executor(kind: ExecutorKind) -> anyhow::Result<ExitCode> {
    use reflex::executors::kafka_loop::{self, KafkaSettings};
    use reflex::executors::{ExecutorConfig, Ledger, SystemClock};
    use std::sync::Arc;
    let (common, kube_dry_run) = match &kind {
        ExecutorKind::Kube { common, dry_run } => (common, Some(*dry_run)),
        ExecutorKind::Webhook { common } => (common, None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = match ExecutorConfig::load(common.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("reflex: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let kind_name = if kube_dry_run.is_some() {
        "kube"
    } else {
        "webhook"
    };
    let settings = KafkaSettings {
        brokers: common.brokers.clone(),
        group_id: common
            .group_id
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| {
                if cfg.kafka.group_id.is_empty() {
                    format!("reflex-executor-{kind_name}")
                } else {
                    cfg.kafka.group_id.clone()
                }
            }),
        input_topics: if kube_dry_run.is_some() {
            vec![cfg.kafka.actions_topic.clone()]
        } else if cfg.webhook.approval_requests {
            vec![
                cfg.kafka.escalations_topic.clone(),
                cfg.kafka.actions_topic.clone(),
            ]
        } else {
            vec![cfg.kafka.escalations_topic.clone()]
        },
        results_topic: cfg.kafka.results_topic.clone(),
        properties: cfg.kafka.properties.clone(),
        health: None,
    };
    let mut settings = settings;
    // The loop may legitimately block for one action's full wait.
    let stall_ms = cfg.rollout_timeout.0.max(cfg.drain_timeout.0).max(0) as u64
        + (cfg.webhook.timeout.0.max(0) as u64 + cfg.webhook.backoff_max.0.max(0) as u64)
            * u64::from(cfg.webhook.max_attempts)
            * cfg.webhook.urls.len().max(1) as u64
        + 120_000;
    // One action may block the loop that long: the group must not evict the
    // consumer meanwhile (librdkafka's default is 5 minutes).
    settings
        .properties
        .entry("max.poll.interval.ms".into())
        .or_insert_with(|| stall_ms.clamp(300_000, i32::MAX as u64).to_string());
    let since = chrono::Utc::now().timestamp_millis() - cfg.ledger_lookback.0;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let handled = rt.block_on(async {
        if let Some(addr) = common.health_addr {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    return Ok(Err(reflex::executors::SetupError::Config(format!(
                        "--health-addr {addr}: {e}"
                    ))))
                }
            };
            let health = reflex::executors::health::Health::new(std::time::Duration::from_millis(
                stall_ms,
            ));
            health.spawn(listener);
            settings.health = Some(health);
        }
        let shutdown = async {
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
        };
        match kube_dry_run {
            Some(dry_run) => {
                let key = match cfg.signing_key() {
                    Ok(k) => k,
                    Err(e) => return Ok(Err(e)),
                };
                let kube_settings = match reflex::executors::kube::KubeSettings::from_config(&cfg) {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e)),
                };
                let client = match reflex::executors::kube::infer_client().await {
                    Ok(c) => c,
                    Err(e) => return Ok(Err(e)),
                };
                let clock = Arc::new(SystemClock);
                let runbooks = reflex::executors::runbook::Runbooks {
                    books: cfg.runbooks.clone(),
                };
                let mut runner = reflex::executors::Runner {
                    gate: cfg.gate(key),
                    ledger: Ledger::new(cfg.ledger_capacity),
                    executor: reflex::executors::kube::KubeExecutor::new(
                        client,
                        kube_settings,
                        clock.clone(),
                        runbooks,
                    ),
                    clock,
                    dry_run,
                };
                Ok(Ok(kafka_loop::run(&settings, &mut runner, since, shutdown).await?))
            }
            None => {
                let ws = match reflex::executors::webhook::WebhookSettings::from_config(&cfg) {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e)),
                };
                let mut ex = reflex::executors::webhook::WebhookExecutor {
                    settings: ws,
                    ledger: Ledger::new(cfg.ledger_capacity),
                    clock: Arc::new(SystemClock),
                };
                Ok(Ok(kafka_loop::run(&settings, &mut ex, since, shutdown).await?))
            }
        }
    });
    match handled {
        Ok(Ok(n)) => {
            eprintln!("reflex executor {kind_name}: {n} input(s) handled");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(e)) => {
            // Both kinds (configuration, Kubernetes configuration) are usage errors.
            let e: reflex::executors::SetupError = e;
            eprintln!("reflex: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e),
    }
}
