//! Subcommands of the `unmask` tool, one module each.

pub mod attack;
pub mod bench;
pub mod calibrate;
pub mod common;
pub mod eval;
pub mod info;
pub mod scan;
pub mod synth;
pub mod train;
pub mod watch;
