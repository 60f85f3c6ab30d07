//! Subcommands of the `unmask` tool, one module each.

pub mod bench;
pub mod info;
pub mod synth;
pub mod train;
