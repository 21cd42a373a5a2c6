//! One small file per verb: glue from the command line to the container API.

/// `println!` that does not panic when stdout is a closed pipe (`husk features | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod events;
mod exec;
mod features;
mod hook;
mod lifecycle;
mod list;
mod pause;
mod ps;
mod pty_proxy;
mod run;
mod spec;
mod update;
mod wait;

use crate::cli::{Cli, Command};
use crate::container::ContainerError;
use crate::state::Store;

/// The process exit code of a successful command.
pub type ExitCode = i32;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Signal(#[from] crate::linux::signals::SignalError),
    #[error(transparent)]
    Network(#[from] husk_net::NetError),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

pub fn dispatch(cli: &Cli) -> Result<ExitCode, CommandError> {
    let store = || Store::open(&cli.root);
    match &cli.command {
        Command::Create(a) => lifecycle::create(&store()?, a, cli.systemd_cgroup),
        Command::Start(a) => lifecycle::start(&store()?, &a.id),
        Command::State(a) => lifecycle::state(&store()?, &a.id),
        Command::Kill(a) => lifecycle::kill(&store()?, a),
        Command::Delete(a) => lifecycle::delete(&store()?, a),
        Command::Run(a) => run::run(&store()?, a, cli.systemd_cgroup),
        Command::Exec(a) => exec::exec(&store()?, a),
        Command::List(a) => list::list(&store()?, a),
        Command::Spec(a) => spec::spec(a, cli.rootless.as_deref().is_some_and(|v| v != "false")),
        Command::Features => features::features(),
        Command::Pause(a) => pause::pause(&store()?, &a.id),
        Command::Resume(a) => pause::resume(&store()?, &a.id),
        Command::Update(a) => update::update(&store()?, a),
        Command::Ps(a) => ps::ps(&store()?, a),
        Command::Events(a) => events::events(&store()?, a),
        Command::Hook(a) => hook::hook(a),
    }
}
