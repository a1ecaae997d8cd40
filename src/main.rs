//! The `medcard` command: read cards, serve a virtual card, check profiles, benchmark.

mod cli;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// medcard — social security card (社会保障卡 / 医保卡) middleware for hospital counters.
///
/// Reads the card through PC/SC (pcscd) with ISO 7816 APDUs, following card layouts kept
/// as data in apdu-specs/. Run `medcard <command> --help` for each command.
#[derive(Parser)]
#[command(name = "medcard", version, about, long_about)]
struct Cli {
    /// Log filter (tracing syntax: error, warn, info, debug, trace; e.g. medcard=debug).
    /// Personal data is masked at every level.
    #[arg(long, global = true, env = "MEDCARD_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Read(cli::read::ReadArgs),
    Sim(cli::sim::SimArgs),
    Profiles(cli::profiles::ProfilesArgs),
    Bench(cli::bench::BenchArgs),
    Demo(cli::demo::DemoArgs),
    Serve(cli::serve::ServeArgs),
    Call(cli::call::CallArgs),
    Events(cli::call::EventsArgs),
    Config(cli::config::ConfigArgs),
    Doctor(cli::doctor::DoctorArgs),
    InsurerSim(cli::insurer_sim::InsurerSimArgs),
    Cache(cli::cache::CacheArgs),
    Sync(cli::sync::SyncArgs),
    Settle(cli::settle::SettleArgs),
    Reconcile(cli::reconcile::ReconcileArgs),
    Journal(cli::journal::JournalArgs),
    Hospital(cli::hospital::HospitalArgs),
    #[command(hide = true)]
    Generate(cli::generate::GenerateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    match cli.command {
        Command::Read(args) => cli::read::run(args),
        Command::Sim(args) => cli::sim::run(args),
        Command::Profiles(args) => cli::profiles::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Call(args) => cli::call::run_call(args),
        Command::Events(args) => cli::call::run_events(args),
        Command::Config(args) => cli::config::run(args),
        Command::Doctor(args) => cli::doctor::run(args),
        Command::InsurerSim(args) => cli::insurer_sim::run(args),
        Command::Cache(args) => cli::cache::run(args),
        Command::Sync(args) => cli::sync::run(args),
        Command::Settle(args) => cli::settle::run(args),
        Command::Reconcile(args) => cli::reconcile::run(args),
        Command::Journal(args) => cli::journal::run(args),
        Command::Hospital(args) => cli::hospital::run(args),
        Command::Generate(args) => cli::generate::run(args, Cli::command()),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
