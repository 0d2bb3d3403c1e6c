//! `mxpulse`: the one binary. It parses the command line, runs the subcommand and maps the
//! outcome to an exit code; everything else lives in `cli/` and the library crates.

mod cli;
mod config;
mod dev_broker;
mod generation;
mod services;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: the ingest allocates per record (decoded strings, keys)
/// and glibc's malloc and its consolidation took a third of its CPU (BENCHMARKS.md, the ingest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging();
    cli::owner_only::restrict_new_files();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("mxpulse: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
