//! husk: parse the command line, set up logging, run the verb, map the outcome to an exit code.

use clap::Parser;

use husk::cli::Cli;
use husk::{commands, logging};

fn main() {
    let cli = Cli::parse();
    logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    let code = match commands::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = husk::process::spawn::error_chain(&e);
            log::error!("{msg}");
            if logging::has_file(cli.log.as_deref()) {
                eprintln!("{msg}");
            }
            1
        }
    };
    std::process::exit(code);
}
