//! `husk-net-hook createRuntime|poststop [--state-dir DIR]`: husk's networking as an OCI hook for
//! runc and crun. Reads the container state from stdin.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use husk_net::{HookStage, error_chain, run_hook};

const USAGE: &str = "usage: husk-net-hook createRuntime|poststop [--state-dir DIR]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut stage = None;
    let mut state_dir = PathBuf::from("/run/husk/net");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--state-dir" => match args.next() {
                Some(d) => state_dir = PathBuf::from(d),
                None => return usage("--state-dir needs a directory"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            s if stage.is_none() => match s.parse::<HookStage>() {
                Ok(st) => stage = Some(st),
                Err(e) => return usage(&e.to_string()),
            },
            other => return usage(&format!("unexpected argument {other:?}")),
        }
    }
    let Some(stage) = stage else {
        return usage("missing the stage");
    };
    let mut state = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut state) {
        eprintln!("husk-net-hook: read the container state from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match run_hook(stage, &state, &state_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("husk-net-hook: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("husk-net-hook: {problem}\n{USAGE}");
    ExitCode::from(2)
}
