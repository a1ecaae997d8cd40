//! `medcard profiles`: list the card profiles in use, or check profile files.

use clap::{Args, Subcommand};
use medcard::profile::{Access, Profile, ProfileSet};
use std::path::PathBuf;
use std::process::ExitCode;

/// Validate and list the card profiles (apdu-specs/*.toml) the reader chooses from.
#[derive(Args)]
pub struct ProfilesArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// List the profiles the reader chooses from (built-in plus --dir).
    List {
        /// Extra profile directory (a file with a built-in profile's name replaces it).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Validate profile files; errors name the file, the item and what is wrong.
    Check {
        /// Profile files (*.toml) to check, together with the built-in ones.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(args: ProfilesArgs) -> ExitCode {
    match args.action {
        Action::List { dir } => match ProfileSet::load(dir.as_deref()) {
            Ok(set) => {
                set.profiles().iter().for_each(print_profile);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        },
        Action::Check { files } => check(&files),
    }
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut loaded = Vec::new();
    for path in files {
        match Profile::load(path) {
            Ok(profile) => loaded.push(profile),
            Err(e) => return fail(&e.to_string()),
        }
    }
    let mut all = ProfileSet::built_in()
        .map(|s| s.profiles().to_vec())
        .unwrap_or_default();
    for profile in &loaded {
        all.retain(|p| p.name != profile.name);
        all.push(profile.clone());
    }
    match ProfileSet::new(all) {
        Ok(_) => {
            for profile in &loaded {
                println!("ok: {} ({})", profile.origin, profile.name);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn print_profile(profile: &Profile) {
    let regions = if profile.matching.regions.is_empty() {
        "all regions".to_owned()
    } else {
        format!("regions {}", profile.matching.regions.join(", "))
    };
    println!(
        "{}  versions {}  {}  — {}",
        profile.name,
        profile.matching.spec_versions.join(", "),
        regions,
        profile.description
    );
    for file in &profile.files {
        let access = match &file.access {
            Access::Free => "free".to_owned(),
            Access::Pin => "PIN".to_owned(),
            Access::ExternalAuth { key, .. } => format!("external auth {key}"),
        };
        println!(
            "  {} {} ({} items, read: {:?}, access: {access})",
            file.name,
            file.label,
            file.items.len(),
            file.read
        );
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("medcard: {message}");
    ExitCode::from(2)
}
