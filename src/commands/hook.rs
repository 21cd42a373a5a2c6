//! `husk hook network <stage>`: the built-in network hook for runc/crun users.

use std::io::Read;

use super::{CommandError, ExitCode};
use crate::cli::{HookArgs, HookCommand};

pub fn hook(a: &HookArgs) -> Result<ExitCode, CommandError> {
    let HookCommand::Network { stage, state_dir } = &a.hook;
    let stage = match stage.as_str() {
        "createRuntime" | "create-runtime" | "prestart" => husk_net::HookStage::CreateRuntime,
        "poststop" => husk_net::HookStage::Poststop,
        other => {
            return Err(CommandError::Usage(format!(
                "unknown hook stage {other:?}: use createRuntime or poststop"
            )));
        }
    };
    let mut state = Vec::new();
    std::io::stdin()
        .read_to_end(&mut state)
        .map_err(|source| CommandError::Io {
            op: "read hook state from",
            path: "stdin".into(),
            source,
        })?;
    husk_net::run_hook(stage, &state, state_dir)?;
    Ok(0)
}
