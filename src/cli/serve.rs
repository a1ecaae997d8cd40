//! `medcard serve`: the daemon. Loads the configuration (flags override it), starts the
//! reader monitor (PC/SC, or in-process virtual cards with `--virtual`), binds the socket
//! (or takes systemd's), tells systemd it is ready, pings the watchdog, reloads on SIGHUP
//! and drains on SIGTERM / SIGINT.

use clap::Args;
use medcard::reader::ReaderBackend;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::serve::config::{Config, DEFAULT_PATH};
use medcard::serve::server::{Listeners, Reloader, Server};
use medcard::serve::verdicts::Services;
use medcard::serve::{Assessor, MonitorConfig, MonitorThread, PsamChoice, spawn_monitor, systemd};
use medcard::sim::card::Chip;
use medcard::sim::card::SharedVirtualReaders;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// Run the daemon: one process owns the readers and answers programs on a local socket.
///
/// JSON-RPC 2.0, one object per line, on a Unix socket (docs/protocol.md). Reads each card
/// once when it is inserted and answers `card.read` from that session. SIGHUP reloads the
/// configuration, SIGTERM finishes requests in progress and exits.
#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file; a missing file means every key has its default.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// The Unix socket (overrides socket.path).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also listen on loopback TCP, e.g. 127.0.0.1:7788 (overrides socket.tcp).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// Connections served at a time (overrides socket.max_connections).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Serve these virtual cards (fixture files or built-in names), one in-process reader
    /// each, instead of PC/SC readers. For demonstrations and tests.
    #[arg(long = "virtual", value_name = "CARD.toml", num_args = 1..)]
    virtual_cards: Vec<String>,
}

impl ServeArgs {
    /// The file's configuration with the flags applied.
    fn config(&self) -> Result<(Config, bool), String> {
        let loaded = Config::load(&self.config).map_err(|e| e.to_string())?;
        let mut config = loaded.config;
        if let Some(path) = &self.socket {
            config.socket.path = path.clone();
        }
        if let Some(tcp) = &self.tcp {
            config.socket.tcp = tcp.clone();
        }
        if let Some(max) = self.max_connections {
            config.socket.max_connections = max;
        }
        let config = config.validated(&self.config).map_err(|e| e.to_string())?;
        for warning in config.check().warnings {
            tracing::warn!(%warning, "configuration");
        }
        Ok((config, loaded.from_file))
    }
}

pub fn run(args: ServeArgs) -> ExitCode {
    let (config, from_file) = match args.config() {
        Ok(loaded) => loaded,
        Err(message) => return fail(&message),
    };
    if from_file {
        tracing::info!(path = %args.config.display(), "configuration loaded");
    } else {
        tracing::info!(path = %args.config.display(), "no configuration file; using defaults");
    }
    let inherited = match systemd::inherited_listener() {
        Ok(listener) => listener,
        Err(e) => return fail(&e.to_string()),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(serve(args, config, inherited)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("medcard serve: {message}");
    ExitCode::FAILURE
}

async fn serve(
    args: ServeArgs,
    config: Config,
    inherited: Option<std::os::unix::net::UnixListener>,
) -> Result<(), String> {
    let socket_activated = inherited.is_some();
    let inherited = inherited
        .map(tokio::net::UnixListener::from_std)
        .transpose()
        .map_err(|e| format!("cannot use systemd's socket: {e}"))?;
    let services = std::sync::Arc::new(Services::open(&config));
    let (handle, monitor) = start_monitor(&args, &config, services.assessor(&config))?;
    // The sync (card-status news has the cards in the readers judged again) and the
    // resolver of unanswered money-moving calls; stopped and joined when serve returns.
    let _background = medcard::serve::background::Background::start(&services, &config, &handle);
    let listeners = Listeners::bind(&config, inherited)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.socket.path.display()))?;
    let socket_path = config.socket.path.clone();
    let server = Server::with_services(config, handle, services);
    let reloading = tokio::spawn(reload_on_hangup(server.reloader(), args));
    let monitor = std::sync::Arc::new(monitor);
    let watchdog = tokio::spawn(watchdog(monitor.clone()));
    notify("READY=1\nSTATUS=serving");
    tracing::info!(path = %socket_path.display(), socket_activated, "serving");
    server.run(listeners, terminated()).await;
    notify("STOPPING=1");
    reloading.abort();
    watchdog.abort();
    if !socket_activated {
        let _ = std::fs::remove_file(&socket_path);
    }
    let _ = tokio::task::spawn_blocking(move || drop(monitor)).await;
    tracing::info!("stopped");
    Ok(())
}

/// The reader monitor over PC/SC or over the `--virtual` cards.
fn start_monitor(
    args: &ServeArgs,
    config: &Config,
    assessor: Option<std::sync::Arc<dyn Assessor>>,
) -> Result<(medcard::serve::MonitorHandle, MonitorThread), String> {
    let profiles_dir = Some(config.readers.profiles.trim())
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from);
    let profiles = super::load_profiles(profiles_dir.as_deref()).map_err(|e| e.to_string())?;
    let monitor_config = MonitorConfig {
        profiles,
        psam: match config.readers.psam.trim() {
            "auto" => PsamChoice::Auto,
            "none" => PsamChoice::None,
            name => PsamChoice::Named(name.to_owned()),
        },
        poll: Duration::from_millis(config.readers.poll_ms),
        assessor,
    };
    if args.virtual_cards.is_empty() {
        let backends = || Box::new(PcscReaders::new()) as Box<dyn ReaderBackend + Send>;
        return Ok(spawn_monitor(monitor_config, backends));
    }
    let readers = SharedVirtualReaders::new();
    for (index, spec) in args.virtual_cards.iter().enumerate() {
        readers.insert(&format!("medcard virtual reader {index}"), load_chip(spec)?);
    }
    let backends = move || Box::new(readers.clone()) as Box<dyn ReaderBackend + Send>;
    Ok(spawn_monitor(monitor_config, backends))
}

/// A card or PSAM file, or a built-in card name.
fn load_chip(spec: &str) -> Result<Chip, String> {
    let path = std::path::Path::new(spec);
    if path.exists() {
        Chip::load(path).map_err(|e| e.to_string())
    } else {
        super::load_card(spec)
            .map(Chip::from)
            .map_err(|e| e.to_string())
    }
}

/// SIGHUP: reads the file again, applies the flags, hands the result to the server.
async fn reload_on_hangup(reloader: Reloader, args: ServeArgs) {
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot catch SIGHUP; reload disabled");
        return;
    };
    while hangups.recv().await.is_some() {
        notify("RELOADING=1");
        match args.config() {
            Ok((config, _)) => {
                reloader.reload(config);
            }
            Err(message) => tracing::error!(%message, "reload failed; keeping the old settings"),
        }
        notify("READY=1");
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot catch SIGTERM / SIGINT");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

/// `WATCHDOG=1` at half the watchdog interval while the monitor thread runs.
async fn watchdog(monitor: std::sync::Arc<MonitorThread>) {
    let Some(interval) = systemd::watchdog_interval() else {
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        if !monitor.is_running() {
            tracing::error!("the reader monitor stopped; no more watchdog pings");
            return;
        }
        notify("WATCHDOG=1");
    }
}

fn notify(state: &str) {
    if let Err(e) = systemd::notify(state) {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}
