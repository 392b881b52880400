//! The `hotserve` binary: parses the command line and configuration, sets up logging and the
//! tokio runtime, and hands over to the library (`hotserve::app::run`, `hotserve::cli`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hotserve::config::flags::{Flags, ScopedFlags, Serve, Tool};
use hotserve::config::{Config, LogFormat};
use hotserve::telemetry::{Settings, Telemetry};

#[derive(Parser)]
#[command(
    name = "hotserve",
    version,
    about = "Serve MLflow ONNX models over HTTP, with atomic hot reload",
    after_help = "Without a command, hotserve serves. `hotserve settings` lists every setting, \
                  its variable and default; any of them can be given with --set key=value."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    // `--config`, the dedicated setting flags and `--set key=value`, built from the declared
    // settings (precedence: flags > environment > file > defaults); here for `hotserve` alone,
    // which serves, and for flags written before a command.
    #[command(flatten)]
    flags: ScopedFlags<Serve>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default)
    Serve {
        #[command(flatten)]
        flags: ScopedFlags<Serve>,
    },
    /// Print what MODEL_URI resolves to right now, or exactly why it does not
    Resolve {
        /// The URI to resolve (default: MODEL_URI)
        uri: Option<String>,
        #[command(flatten)]
        flags: ScopedFlags<Tool>,
    },
    /// Download and run the full validation gate; exit 0 only if the model would go live
    Validate {
        /// A model URI or directory
        uri: String,
        /// Also compare it with this (live) model on --inputs, as shadow mode would; exit 1 when
        /// it would be refused (shadow_min_agreement, shadow_max_latency_ratio, errors)
        #[arg(long, value_name = "LIVE_URI", requires = "inputs")]
        against: Option<String>,
        /// Texts to compare on, one per line (with --against)
        #[arg(long, value_name = "FILE", requires = "against")]
        inputs: Option<std::path::PathBuf>,
        #[command(flatten)]
        flags: ScopedFlags<Tool>,
    },
    /// List every setting with its environment variable, default and meaning
    Settings,
}

impl Command {
    /// The flags written after the command.
    fn flags(&self) -> Flags {
        match self {
            Command::Serve { flags } => flags.flags.clone(),
            Command::Resolve { flags, .. } | Command::Validate { flags, .. } => flags.flags.clone(),
            Command::Settings => Flags::default(),
        }
    }
}

fn main() -> ExitCode {
    // First, while this is the only thread: large blocks always get their own mappings.
    hotserve::reload::loader::pin_mmap_threshold();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve {
        flags: ScopedFlags::default(),
    });
    if let Command::Settings = command {
        print!("{}", hotserve::config::describe());
        return ExitCode::SUCCESS;
    }
    let flags = cli.flags.flags.then(command.flags());
    let env = |name: &str| std::env::var(name).ok();
    let variables = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    let config = match Config::load(&flags.inputs(&env, variables)) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("hotserve: {err}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match Settings::from_env(&env) {
        Ok(None) => None,
        Ok(Some(settings)) => match Telemetry::start(&settings) {
            Ok(telemetry) => Some((telemetry, settings)),
            Err(err) => {
                eprintln!("hotserve: {err}");
                return ExitCode::from(2);
            }
        },
        Err(err) => {
            eprintln!("hotserve: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config, telemetry.as_ref().map(|(telemetry, _)| telemetry));
    if let Some((_, settings)) = &telemetry {
        tracing::info!(endpoint = %settings.endpoint, protocol = ?settings.protocol, "exporting traces over OTLP");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hotserve-io")
        .max_blocking_threads(64)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hotserve: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        match command {
            Command::Serve { .. } => serve(config).await,
            Command::Resolve { uri, .. } => hotserve::cli::resolve(&config, uri, &env).await,
            Command::Validate {
                uri,
                against: Some(live),
                inputs: Some(inputs),
                ..
            } => hotserve::cli::validate_against(&config, &uri, &live, &inputs, &env).await,
            Command::Validate { uri, .. } => hotserve::cli::validate(&config, &uri, &env).await,
            // Answered before the configuration was read.
            Command::Settings => 0,
        }
    });
    // Blocking threads may still hold a finished download or a tokenization; don't wait.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Some((telemetry, _)) = telemetry {
        telemetry.shutdown();
    }
    ExitCode::from(code)
}

async fn serve(config: Config) -> u8 {
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(
                "cannot listen on {}: {err}; set HOTSERVE_LISTEN or --listen to a free address",
                config.listen
            );
            return 1;
        }
    };
    let triggers = hotserve::reload::Triggers::default();
    spawn_sighup(triggers.clone());
    let env = |name: &str| std::env::var(name).ok();
    match hotserve::app::run(config, listener, &env, triggers, shutdown_signal()).await {
        Ok(()) => 0,
        Err(err) => {
            tracing::error!("{err}");
            err.exit_code()
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: exiting at once");
        std::process::exit(1);
    });
}

fn spawn_sighup(triggers: hotserve::reload::Triggers) {
    use tokio::signal::unix::{signal, SignalKind};
    if let Ok(mut hup) = signal(SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("received SIGHUP: checking for a new model");
                triggers.request(hotserve::reload::Trigger::Signal);
            }
        });
    }
}

/// Logging, and with `OTEL_EXPORTER_OTLP_*ENDPOINT` set, the OpenTelemetry layer beside it:
/// then each has its own filter (the log level does not decide which spans are exported).
fn init_logging(config: &Config, telemetry: Option<&Telemetry>) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = || {
        tracing_subscriber::EnvFilter::try_new(&config.log_level)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let ansi = std::io::stderr().is_terminal();
    let Some(telemetry) = telemetry else {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(ansi)
            .with_writer(std::io::stderr);
        match config.log_format {
            LogFormat::Json => builder.json().with_current_span(true).init(),
            LogFormat::Text => builder.init(),
        }
        return;
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = match config.log_format {
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_filter(filter())
            .boxed(),
        LogFormat::Text => fmt.with_filter(filter()).boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(telemetry.layer())
        .init();
}
