//! `create`: everything up to the point where init waits for `start`. Every side effect is
//! recorded in a [`Rollback`]; a failure anywhere undoes them all, so a failed create leaves
//! no state dir, cgroup, network or process behind.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::{ContainerError, EXEC_FIFO, Status, oci_state};
use crate::cgroups::CgroupManager;
use crate::linux::{namespaces, procfs, signals};
use crate::process::channel::{ChannelError, ToChild, ToParent};
use crate::process::spawn::{InitContext, OverlayDirs, fork_stage1};
use crate::spec::{ContainerPlan, PlanOptions, SpecError, build_plan, load_bundle};
use crate::state::{ContainerRecord, Phase, Store, rfc3339_now};

#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub systemd_cgroup: bool,
    pub pidfd_socket: Option<PathBuf>,
    pub no_new_keyring: bool,
}

/// What a failed create must undo, newest first.
struct Rollback<'a> {
    store: &'a Store,
    id: String,
    armed: bool,
    state_dir: bool,
    cgroup: Option<Box<dyn CgroupManager>>,
    init: Option<(i32, u64)>,
    network: Option<husk_net::NetworkRecord>,
    net_dir: PathBuf,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some((pid, start)) = self.init
            && signals::signal_process(pid, start, libc::SIGKILL).is_ok()
        {
            // We are a subreaper: the orphaned init is our child now.
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(net) = &self.network
            && let Err(e) = husk_net::teardown(net, &self.net_dir)
        {
            log::warn!("roll back network of {}: {e}", self.id);
        }
        if let Some(cg) = &self.cgroup
            && let Err(e) = cg.destroy()
        {
            log::warn!("roll back cgroup of {}: {e}", self.id);
        }
        if self.state_dir
            && let Err(e) = self.store.remove(&self.id)
        {
            log::warn!("roll back state of {}: {e}", self.id);
        }
    }
}

pub fn create(store: &Store, req: &CreateRequest) -> Result<ContainerRecord, ContainerError> {
    crate::state::validate_id(&req.id)?;
    let loaded = load_bundle(&req.bundle)?;
    let opts = PlanOptions {
        id: req.id.clone(),
        no_pivot: req.no_pivot,
        has_console_socket: req.console_socket.is_some(),
    };
    let plan = build_plan(&loaded, &opts).map_err(SpecError::Invalid)?;
    // Connect before any side effect: a bad socket path is the caller's mistake.
    let console_socket = match (&req.console_socket, plan.process.terminal) {
        (Some(path), true) => Some(super::connect_console(path)?),
        _ => None,
    };

    let dir = store.reserve(&req.id)?;
    let mut rb = Rollback {
        store,
        id: req.id.clone(),
        armed: true,
        state_dir: true,
        cgroup: None,
        init: None,
        network: None,
        net_dir: store.root().join("net"),
    };
    let mut record = ContainerRecord {
        id: req.id.clone(),
        bundle: loaded.bundle.clone(),
        rootfs: plan.rootfs.clone(),
        phase: Phase::Creating,
        pid: 0,
        start_time: 0,
        created: rfc3339_now(),
        owner: "root".into(),
        annotations: plan.annotations.clone(),
        config: loaded.raw.clone(),
        cgroup_path: plan.cgroups_path.clone(),
        systemd_cgroup: req.systemd_cgroup,
        cgroup2_mount: std::env::var_os(super::CGROUP2_MOUNT_ENV).map(PathBuf::from),
        network: None,
    };
    store.save(&record)?;

    let fifo = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622)).map_err(|source| {
        ContainerError::Sys {
            op: format!("mkfifo {}", fifo.display()),
            source,
        }
    })?;
    // Any container user may open it for writing; the umask must not take that away.
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622)).map_err(|source| {
        ContainerError::Io {
            op: "chmod",
            path: fifo.clone(),
            source,
        }
    })?;

    let exec_fifo = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| ContainerError::Sys {
        op: format!("open {}", fifo.display()),
        source,
    })?;
    let (rootfs, overlay) = overlay_dirs(&plan, &dir)?;

    let cgroup = super::manager_for(
        plan.cgroups_path.as_deref(),
        &req.id,
        req.systemd_cgroup,
        record.cgroup2_mount.as_deref(),
    )?;
    cgroup.create()?;
    let cgroup_binds = cgroup_binds(cgroup.as_ref());
    rb.cgroup = Some(cgroup);

    // We adopt init when stage-1 exits, so a failed create can reap it.
    set_subreaper()?;
    let ctx = InitContext {
        plan: &plan,
        rootfs: rootfs.clone(),
        overlay,
        exec_fifo,
        console_socket,
        preserve_fds: req.preserve_fds,
        new_keyring: !req.no_new_keyring,
        cgroup_binds,
    };
    let ooms_before = rb
        .cgroup
        .as_ref()
        .and_then(|cg| cg.oom_count().ok())
        .unwrap_or(0);
    let (stage1, chan) = fork_stage1(&ctx)?;
    drop(ctx);
    // stage-1 joins the cgroup before it creates namespaces, so init is born inside it.
    let joined = (|| {
        let cg = rb.cgroup.as_ref().ok_or(ContainerError::InitVanished)?;
        // Limits first, while the cgroup is empty: a tight memory limit cannot fail on usage
        // the joining process already has, and nothing runs unlimited for a moment.
        if let Some(res) = &plan.resources {
            cg.apply(res)?;
        }
        cg.add_task(stage1.as_raw())?;
        chan.send(&ToChild::Proceed)?;
        Ok::<(), ContainerError>(())
    })();
    if let Err(e) = joined {
        super::kill_and_reap(stage1);
        return Err(e);
    }

    let mut stage1_reaped = false;
    let outcome = (|| loop {
        match chan.recv::<ToParent>() {
            Ok(ToParent::WriteIdMaps) => {
                namespaces::write_id_maps(stage1.as_raw(), &plan.uid_map, &plan.gid_map)?;
                chan.send(&ToChild::IdMapsWritten)?;
            }
            Ok(ToParent::InitPid(pid)) => {
                let _ = waitpid(stage1, None);
                stage1_reaped = true;
                let start = procfs::stat(pid)
                    .map_err(|source| ContainerError::Io {
                        op: "read start time of",
                        path: format!("/proc/{pid}/stat").into(),
                        source,
                    })?
                    .start_time;
                rb.init = Some((pid, start));
                record.pid = pid;
                record.start_time = start;
                store.save(&record)?;
                chan.send(&ToChild::Proceed)?;
            }
            Ok(ToParent::RunRuntimeHooks) => {
                let state = oci_state(&record, Status::Creating).to_string();
                run_runtime_hooks(
                    store,
                    &plan,
                    &mut record,
                    &mut rb,
                    &rootfs,
                    &dir,
                    state.as_bytes(),
                )?;
                chan.send(&ToChild::RuntimeHooksDone { state })?;
            }
            Ok(ToParent::Ready) => return Ok(()),
            Ok(ToParent::Failed(msg)) => return Err(ContainerError::InitFailed(msg)),
            Err(ChannelError::Closed) => return Err(ContainerError::InitVanished),
            Err(e) => return Err(e.into()),
        }
    })();
    if !stage1_reaped {
        // stage-1 may still wait for us on the channel: it must not be waited for blindly.
        super::kill_and_reap(stage1);
    }
    if let Err(ContainerError::InitVanished) = outcome {
        let ooms = rb
            .cgroup
            .as_ref()
            .and_then(|cg| cg.oom_count().ok())
            .unwrap_or(0);
        if ooms > ooms_before {
            return Err(ContainerError::InitOomKilled);
        }
    }
    outcome?;

    record.phase = Phase::Created;
    store.save(&record)?;
    if let Some(pid_file) = &req.pid_file {
        write_pid_file(pid_file, record.pid)?;
    }
    if let Some(sock) = &req.pidfd_socket {
        send_pidfd(sock, record.pid, record.start_time)?;
    }
    rb.armed = false;
    Ok(record)
}

/// prestart (deprecated, same moment), the built-in network, then createRuntime hooks.
fn run_runtime_hooks(
    store: &Store,
    plan: &ContainerPlan,
    record: &mut ContainerRecord,
    rb: &mut Rollback,
    rootfs: &Path,
    dir: &Path,
    state: &[u8],
) -> Result<(), ContainerError> {
    crate::hooks::run_hooks(plan.hooks.prestart().as_deref().unwrap_or_default(), state)?;
    if let Some(req) = &plan.network {
        let target = husk_net::Target {
            container_id: record.id.clone(),
            pid: record.pid,
            rootfs: rootfs.to_owned(),
            owner_dir: Some(dir.to_owned()),
        };
        // Recorded before anything is built: if husk dies during setup, `delete` finds the rest
        // through the leases, which name this container.
        record.network = Some(husk_net::NetworkRecord::empty(req, &record.id));
        store.save(record)?;
        // If setup fails and its own rollback leaves something, ours tries again from the lease.
        rb.network = record.network.clone();
        let built = husk_net::setup(req, &target, &rb.net_dir)?;
        record.network = Some(built.clone());
        rb.network = Some(built);
        store.save(record)?;
    }
    crate::hooks::run_hooks(
        plan.hooks.create_runtime().as_deref().unwrap_or_default(),
        state,
    )?;
    Ok(())
}

/// With `io.husk.rootfs.overlay=true`, the root is an overlay whose upper layer lives in the
/// state dir (gone at delete); the bundle rootfs stays untouched.
fn overlay_dirs(
    plan: &ContainerPlan,
    dir: &Path,
) -> Result<(PathBuf, Option<OverlayDirs>), ContainerError> {
    if !plan.overlay_rootfs {
        return Ok((plan.rootfs.clone(), None));
    }
    let upper = dir.join("upper");
    let work = dir.join("work");
    let merged = dir.join("rootfs");
    for d in [&upper, &work, &merged] {
        std::fs::create_dir(d).map_err(|source| ContainerError::Io {
            op: "create overlay dir",
            path: d.clone(),
            source,
        })?;
    }
    Ok((merged, Some(OverlayDirs { upper, work })))
}

/// What a cgroup mount in the container shows: the container's own cgroup in each hierarchy,
/// under the name the hierarchy has in /sys/fs/cgroup.
fn cgroup_binds(cg: &dyn CgroupManager) -> Vec<(String, PathBuf)> {
    cg.dirs()
        .into_iter()
        .map(|d| {
            let name = if d.mount_point == Path::new("/sys/fs/cgroup") {
                String::new()
            } else {
                d.mount_point
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            (name, d.dir)
        })
        .collect()
}

/// Hands the engine a pidfd of init (containerd's --pidfd-socket).
fn send_pidfd(path: &Path, pid: i32, start_time: u64) -> Result<(), ContainerError> {
    use std::os::fd::AsRawFd;
    let pidfd = crate::linux::signals::pidfd_for(pid, start_time)?;
    let stream = UnixStream::connect(path).map_err(|source| ContainerError::Io {
        op: "connect pidfd socket",
        path: path.to_owned(),
        source,
    })?;
    let fds = [pidfd.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(b"pidfd")],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(|source| ContainerError::Sys {
        op: format!("send pidfd over {}", path.display()),
        source,
    })
}

pub(super) fn set_subreaper() -> Result<(), ContainerError> {
    crate::linux::process_attrs::set_child_subreaper().map_err(|source| ContainerError::Sys {
        op: "become child subreaper".into(),
        source,
    })
}

/// Written to a temp file and renamed, so engines never read a partial pid.
pub(super) fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ContainerError::Io {
            op: "write pid file",
            path: path.to_owned(),
            source,
        })
}
