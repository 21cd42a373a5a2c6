//! The command line, runc-compatible: global flags and one struct per verb. Parsing only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "husk",
    version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.1"),
    about = "An OCI container runtime with built-in networking (runc-compatible)"
)]
pub struct Cli {
    /// Root directory for storage of container state.
    #[arg(long, global = true, default_value = "/run/husk")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Enable debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Interpret cgroupsPath as systemd's slice:prefix:name.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// With `spec`: write a rootless config. Otherwise accepted for compatibility.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for compatibility (runc's criu path); unused.
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (all setup; the process waits for `start`).
    Create(CreateArgs),
    /// Start the user process of a created container.
    Start(IdArg),
    /// Print the OCI state of a container.
    State(IdArg),
    /// Send a signal to the container's init process.
    Kill(KillArgs),
    /// Delete a container and everything it owns.
    Delete(DeleteArgs),
    /// Create and start a container, and wait for it.
    Run(RunArgs),
    /// Run a new process inside a running container.
    Exec(ExecArgs),
    /// List containers.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Write a default config.json.
    Spec(SpecArgs),
    /// Freeze every process of the container.
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Change the resource limits of a running container.
    Update(UpdateArgs),
    /// List the processes of a container.
    Ps(PsArgs),
    /// Print container events (stats, OOM) as JSON lines.
    Events(EventsArgs),
    /// Print the OCI features JSON.
    Features,
    /// Run a built-in hook (network) as an OCI hook, reading the state on stdin.
    Hook(HookArgs),
}

#[derive(Debug, Args)]
pub struct IdArg {
    pub id: String,
}

#[derive(Debug, Args, Clone)]
pub struct CreateOptions {
    /// Path to the bundle directory.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the init process.
    #[arg(long)]
    pub pidfd_socket: Option<PathBuf>,
    /// File to write the init pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring (accepted; husk creates none).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) into the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub id: String,
    #[command(flatten)]
    pub opts: CreateOptions,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub id: String,
    #[command(flatten)]
    pub opts: CreateOptions,
    /// Return after starting the container.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Do not delete the container after it exits.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    pub id: String,
    /// The command and its arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A process.json describing the process.
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Allocate a terminal (sent over --console-socket).
    #[arg(long, short = 't')]
    pub tty: bool,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Accepted for containerd; a pidfd is sent when given.
    #[arg(long)]
    pub pidfd_socket: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=VALUE).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    #[arg(long, short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the process's sets.
    #[arg(long, short = 'c')]
    pub cap: Vec<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for compatibility: the process joins the container's cgroup.
    #[arg(long)]
    pub cgroup: Vec<String>,
    #[arg(long)]
    pub ignore_paused: bool,
    /// Accepted for compatibility (no AppArmor/SELinux support).
    #[arg(long)]
    pub apparmor: Option<String>,
    #[arg(long)]
    pub process_label: Option<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    pub id: String,
    /// Signal name (TERM, SIGTERM) or number; default SIGTERM.
    pub signal: Option<String>,
    /// Signal every process of the container.
    #[arg(long, short = 'a')]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub id: String,
    /// Kill the container first if it is running.
    #[arg(long, short = 'f')]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the ids.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub id: String,
    /// A JSON file of linux.resources ("-" for stdin), as containerd and podman send.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_burst: Option<u64>,
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long, alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    #[arg(long)]
    pub cpu_idle: Option<i64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with k/m/g suffix; -1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    pub id: String,
    #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Arguments for ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    pub id: String,
    /// Print one stats event and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between stats events (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s")]
    pub interval: String,
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Where to write config.json.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
}

#[derive(Debug, Args)]
pub struct HookArgs {
    #[command(subcommand)]
    pub hook: HookCommand,
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// The network hook: `createRuntime` builds, `poststop` tears down.
    Network {
        /// createRuntime | poststop
        stage: String,
        /// Where leases and records live.
        #[arg(long, default_value = "/run/husk/net")]
        state_dir: PathBuf,
    },
}
