//! aufsctl: the command line over the aufs driver.

mod cli;
mod commands;
mod serve;
mod wiring;

use clap::Parser;
use std::process::ExitCode;

/// How a command ended besides success.
#[derive(Debug)]
pub enum Failure {
    /// A clean "no" (exit 1, nothing printed).
    No,
    /// A failed operation (exit 1, one error line).
    Error(String),
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(error_chain(&e))
    }
}

/// The error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    aufs_driver::with_causes(e).replace('\n', " ")
}

/// The cause of a usage error on one line: clap's first paragraph (the
/// usage and tips follow blank lines) with its lines joined, and any other
/// control character (from the offending value) escaped.
fn usage_cause(msg: &str) -> String {
    let first = msg
        .trim_start()
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let cause: String = first
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    if cause.is_empty() {
        "usage error".to_owned()
    } else {
        cause
    }
}

fn init_logging(verbose: u8, quiet: u8) {
    let level = match (verbose as i16) - (quiet as i16) {
        i16::MIN..=0 => "off",
        1 => "warn",
        2 => "info",
        3 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("AUFSCTL_LOG").unwrap_or_else(|_| level.to_string());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(wiring::UNION_SERVER_ARG)) {
        let code = aufs_fuse::server::run_from_args(args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "aufsctl: error: {} (see aufsctl --help)",
                usage_cause(&e.to_string())
            );
            return ExitCode::from(2);
        }
    };
    init_logging(cli.verbose, cli.quiet);
    match commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::No) => ExitCode::from(1),
        Err(Failure::Error(msg)) => {
            eprintln!("aufsctl: error: {msg}");
            ExitCode::from(1)
        }
    }
}
