//! The commands, one module per group: the layer commands (`layers`),
//! images (`images`), a Docker install read in place (`legacy`), and the
//! servers (`crate::serve`). `run` only dispatches.

mod images;
mod layers;
mod legacy;
mod output;

use crate::cli::{Cli, Command};
use crate::wiring::open_driver;
use crate::Failure;

/// Runs the parsed command line.
pub fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        // A Docker install is read in place: no store of ours is opened.
        Command::Legacy { command } => legacy::run(cli, command),
        // A server opens the roots its clients name.
        Command::Serve { command } => crate::serve::run(cli, command),
        Command::Import { image } => images::import(cli.json, &open_driver(cli)?, image),
        Command::Export { id, output, oci } => images::export(&open_driver(cli)?, id, output, *oci),
        layer_command => layers::run(cli, &open_driver(cli)?, layer_command),
    }
}
