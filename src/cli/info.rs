//! `unmask info`: where the defaults are and what devices exist.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `unmask info`.
#[derive(Debug, Args)]
pub struct InfoArgs {}

/// Prints the default paths and device availability.
pub fn run(_args: InfoArgs) -> anyhow::Result<ExitCode> {
    println!("models dir: {}", unmask::paths::models_dir().display());
    println!("cuda: {}", unmask::device::cuda_available());
    Ok(ExitCode::SUCCESS)
}
