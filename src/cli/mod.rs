//! Subcommands of the `unmask` tool, one module each.

pub mod calibrate;
pub mod eval;
pub mod info;
pub mod synth;
pub mod train;
