//! The `reflex` command line (SPEC §4). `anyhow` lives here only; every
//! subcommand is one function returning the exit code.

use anyhow::Context;
use clap::{Parser, Subcommand};
use reflex::config::Config;
use reflex::pipeline::embedded::{self, DecideOptions};
use reflex::sinks::file::FileSink;
use reflex::sources::file::LineReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "reflex", version, about = "Self-healing stream processor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            input,
            output_dir,
            http,
            hold,
        } => cmd_run(config, input, output_dir, http, hold),
        Command::Validate { config } => cmd_validate(config),
        Command::Anomalies { input, output } => cmd_anomalies(input, output),
        Command::Templates { input, output } => cmd_templates(input, output),
        Command::Generate {
            events,
            seed,
            output,
        } => cmd_generate(events, seed, output),
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
    }
}

fn cmd_run(
    config: Option<PathBuf>,
    input: PathBuf,
    output_dir: PathBuf,
    http: Option<String>,
    hold: bool,
) -> anyhow::Result<ExitCode> {
    use reflex::pipeline::embedded::RunHooks;
    use reflex::telemetry::{logging, otel, server, Readiness, ReadyCondition, TapSink, Telemetry};
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
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
            return Ok(ExitCode::from(2));
        }
    };
    let otlp =
        tcfg.effective_otlp_endpoint(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().as_deref());
    let reader = match LineReader::open(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("reflex: cannot open input {}: {e}", input.display());
            return Ok(ExitCode::from(2));
        }
    };
    let mut sink = FileSink::create(&output_dir)
        .with_context(|| format!("creating outputs in {}", output_dir.display()))?;
    let name = input.display().to_string();

    let readiness = Readiness::embedded();
    let telemetry = Arc::new(Telemetry::new(Arc::default(), readiness.clone(), tcfg));
    // A runtime exists only for the HTTP server and OTLP export.
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
                return Ok(ExitCode::from(2));
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
                return Ok(ExitCode::from(2));
            }
        };
        let local = listener.local_addr().context("reading the bound address")?;
        // A fixed line (not a log record) so scripts can find the port.
        eprintln!("reflex: http listening on {local}");
        rt.spawn(server::serve(listener, telemetry.clone()));
    }
    readiness.set(ReadyCondition::Config);

    let hooks = RunHooks {
        stats: telemetry.stats.clone(),
        readiness: Some(readiness),
    };
    let mut tap = TapSink::new(&mut sink, telemetry.clone());
    let result = embedded::run_with(&cfg, &decide_options(), reader, &name, &mut tap, hooks);
    telemetry.finish();
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
    if let Some(rt) = rt {
        rt.block_on(async {
            if hold && http_addr.is_some() {
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

fn cmd_validate(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    match load_config(config) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} threshold rule(s), {} signature rule(s), {} catalogued service(s), {} action categories, 7 Avro schemas)",
                cfg.source,
                cfg.detectors.threshold.rules.len(),
                cfg.signatures.rules().len(),
                cfg.catalog.services.len(),
                cfg.actions.categories.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
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
