//! `mxpulse config`: print the effective configuration (defaults, file and environment
//! merged), so an operator sees what a job will run with. Loading it is the check.

use clap::Args;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct ConfigArgs {}

pub fn run(_args: &ConfigArgs, config: &Config) -> anyhow::Result<()> {
    print!("{}", config.to_toml());
    Ok(())
}
