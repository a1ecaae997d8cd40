//! `medcard serve`: the daemon. Loads the configuration (flags override it), chooses the
//! readers (PC/SC, or in-process virtual cards with `--virtual`), takes systemd's socket when
//! socket-activated, and runs [`Daemon`] (which tells systemd it is ready and pings the
//! watchdog) until SIGTERM / SIGINT; reloads the configuration on SIGHUP.

use clap::Args;
use medcard::reader::ReaderBackend;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::serve::Daemon;
use medcard::serve::config::{Config, DEFAULT_PATH};
use medcard::serve::daemon::DaemonError;
use medcard::serve::messages::hospital_failure_line;
use medcard::serve::server::Reloader;
use medcard::serve::systemd::{self, NotifyState};
use medcard::sim::card::SharedVirtualReaders;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
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
    // Before any thread: memory freed after a burst goes back to few arenas (serve::heavy).
    medcard::serve::heavy::limit_arenas();
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
    let daemon = if args.virtual_cards.is_empty() {
        let readers = || Box::new(PcscReaders::new()) as Box<dyn ReaderBackend + Send>;
        Daemon::start(config, readers, inherited).await
    } else {
        let readers = virtual_readers(&args.virtual_cards)?;
        let backends = move || Box::new(readers.clone()) as Box<dyn ReaderBackend + Send>;
        Daemon::start(config, backends, inherited).await
    }
    .map_err(|e| match &e {
        // The hospital database's refusal, in the operator's two languages.
        DaemonError::Hospital(refusal) => hospital_failure_line(refusal),
        _ => e.to_string(),
    })?;
    let reloading = tokio::spawn(reload_on_hangup(daemon.reloader(), args));
    daemon.run(terminated()).await;
    reloading.abort();
    Ok(())
}

/// One in-process reader for each `--virtual` card.
fn virtual_readers(cards: &[String]) -> Result<SharedVirtualReaders, String> {
    let readers = SharedVirtualReaders::new();
    for (index, spec) in cards.iter().enumerate() {
        let chip = super::load_chip(Path::new(spec)).map_err(|e| e.to_string())?;
        readers.insert(&format!("medcard virtual reader {index}"), chip);
    }
    Ok(readers)
}

/// SIGHUP: reads the file again, applies the flags, hands the result to the server.
async fn reload_on_hangup(reloader: Reloader, args: ServeArgs) {
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot catch SIGHUP; reload disabled");
        return;
    };
    while hangups.recv().await.is_some() {
        systemd::notify(&[NotifyState::Reloading]);
        match args.config() {
            Ok((config, _)) => {
                reloader.reload(config);
            }
            Err(message) => tracing::error!(%message, "reload failed; keeping the old settings"),
        }
        systemd::notify(&[NotifyState::Ready]);
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
