//! Everything husk will do for one container, resolved and checked before any side effect.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::{
    Hooks, LinuxDeviceType, LinuxNamespaceType, LinuxResources, Process, Spec,
};

use super::load::LoadedBundle;
use super::mounts::{MountOp, clean_container_path, plan_mount};
use crate::linux::{capabilities, rlimits, seccomp};

/// Annotation that asks for a private overlay over the bundle rootfs.
pub const OVERLAY_ANNOTATION: &str = "io.husk.rootfs.overlay";

/// Every problem found in a config, each naming the field and the value.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl Problems {
    fn push(&mut self, p: impl Into<String>) {
        self.0.push(p.into());
    }
    /// Keeps the value of a check, recording its problem if it failed.
    fn take<T, E: fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.push(format!("{field}: {e}"))).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone)]
pub struct NamespacePlan {
    /// Namespaces to create, except user (created first, by itself, so the others belong to it).
    pub new: CloneFlags,
    pub new_user: bool,
    /// Namespaces to join by path, user first.
    pub join: Vec<(CloneFlags, PathBuf)>,
}

impl Default for NamespacePlan {
    fn default() -> Self {
        Self {
            new: CloneFlags::empty(),
            new_user: false,
            join: Vec::new(),
        }
    }
}

impl NamespacePlan {
    /// Whether the container gets (or joins) a namespace of this kind rather than sharing husk's.
    pub fn has(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag)
            || (flag == CloneFlags::CLONE_NEWUSER && self.new_user)
            || self.join.iter().any(|(f, _)| *f == flag)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: PathBuf,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: libc::mode_t,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    pub no_new_privileges: bool,
    pub capabilities: Option<capabilities::CapabilityPlan>,
    pub rlimits: rlimits::RlimitPlan,
    pub oom_score_adj: Option<i32>,
}

#[derive(Debug)]
pub struct ContainerPlan {
    pub id: String,
    pub bundle: PathBuf,
    /// Host path of the bundle rootfs.
    pub rootfs: PathBuf,
    pub overlay_rootfs: bool,
    pub readonly_root: bool,
    pub rootfs_propagation: MsFlags,
    pub no_pivot: bool,
    pub namespaces: NamespacePlan,
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    /// (clock name, secs, nanosecs) for a new time namespace.
    pub time_offsets: Vec<(String, i64, u32)>,
    pub mounts: Vec<MountOp>,
    pub devices: Vec<DeviceNode>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctl: BTreeMap<String, String>,
    pub personality: Option<libc::c_ulong>,
    pub process: ProcessPlan,
    pub seccomp: Option<seccomp::CompiledSeccomp>,
    pub cgroups_path: Option<String>,
    pub resources: Option<LinuxResources>,
    pub network: Option<husk_net::NetworkRequest>,
    pub hooks: Hooks,
    pub annotations: BTreeMap<String, String>,
}

/// What the command line adds to the config.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub id: String,
    pub no_pivot: bool,
    pub has_console_socket: bool,
}

/// Builds the plan, or reports every problem at once.
pub fn build_plan(loaded: &LoadedBundle, opts: &PlanOptions) -> Result<ContainerPlan, Problems> {
    let spec = &loaded.spec;
    let bundle = &loaded.bundle;
    let mut p = Problems::default();

    if !spec.version().starts_with("1.") {
        p.push(format!(
            "ociVersion: {:?} is not a 1.x version",
            spec.version()
        ));
    }
    let rootfs = plan_root(spec, bundle, &mut p);
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let overlay_rootfs = match annotations.get(OVERLAY_ANNOTATION).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            p.push(format!(
                "annotations.{OVERLAY_ANNOTATION}: {v:?} is not true or false"
            ));
            false
        }
    };

    let linux = spec.linux().clone().unwrap_or_default();
    let namespaces = plan_namespaces(&linux, &mut p);
    let uid_map = id_maps(linux.uid_mappings());
    let gid_map = id_maps(linux.gid_mappings());
    if namespaces.new_user && (uid_map.is_empty() || gid_map.is_empty()) {
        p.push("linux.uidMappings/gidMappings: a new user namespace needs both mappings");
    }
    if !namespaces.new_user && (!uid_map.is_empty() || !gid_map.is_empty()) {
        p.push(
            "linux.uidMappings/gidMappings: mappings are only allowed with a new user namespace",
        );
    }
    let time_offsets = plan_time_offsets(&linux, &namespaces, &mut p);

    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if let Some(op) = p.take(&format!("mounts[{i}]"), plan_mount(m, bundle)) {
            mounts.push(op);
        }
    }
    let devices = plan_devices(&linux, &mut p);
    let masked_paths = clean_paths("linux.maskedPaths", linux.masked_paths(), &mut p);
    let readonly_paths = clean_paths("linux.readonlyPaths", linux.readonly_paths(), &mut p);

    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        && !namespaces.has(CloneFlags::CLONE_NEWUTS)
    {
        p.push("hostname: setting a hostname needs a new uts namespace");
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty())
        && !namespaces.has(CloneFlags::CLONE_NEWUTS)
    {
        p.push("domainname: setting a domainname needs a new uts namespace");
    }
    let sysctl: BTreeMap<String, String> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    for key in sysctl.keys() {
        if let Err(why) = check_sysctl(key, &namespaces) {
            p.push(format!("linux.sysctl.{key}: {why}"));
        }
    }
    let personality = linux.personality().as_ref().map(|pers| {
        if pers.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            p.push("linux.personality.flags: no flags are supported");
        }
        match pers.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
        }
    });
    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") | Some("rslave") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some("slave") => MsFlags::MS_SLAVE,
        Some("rprivate") => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        Some("private") => MsFlags::MS_PRIVATE,
        Some("rshared") => MsFlags::MS_SHARED | MsFlags::MS_REC,
        Some("shared") => MsFlags::MS_SHARED,
        Some("runbindable") => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        Some("unbindable") => MsFlags::MS_UNBINDABLE,
        Some(v) => {
            p.push(format!("linux.rootfsPropagation: unknown value {v:?}"));
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        }
    };

    let process = plan_process(spec, opts, &mut p);
    let seccomp = linux
        .seccomp()
        .as_ref()
        .and_then(|s| p.take("linux.seccomp", seccomp::compile(s)));
    let network = if namespaces
        .join
        .iter()
        .any(|(f, _)| *f == CloneFlags::CLONE_NEWNET)
        || !namespaces.new.contains(CloneFlags::CLONE_NEWNET)
    {
        // Joining an existing netns (or sharing the host's): husk leaves networking alone.
        None
    } else {
        let ann = spec.annotations().clone().unwrap_or_default();
        p.take("annotations", husk_net::parse_annotations(&ann))
            .flatten()
    };

    let resources =
        with_default_device_rules(linux.resources().clone().unwrap_or_default(), &devices);
    let (Some(rootfs), Some(process)) = (rootfs, process) else {
        return Err(p);
    };
    if !p.0.is_empty() {
        return Err(p);
    }
    Ok(ContainerPlan {
        id: opts.id.clone(),
        bundle: bundle.clone(),
        rootfs,
        overlay_rootfs,
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        rootfs_propagation,
        no_pivot: opts.no_pivot,
        namespaces,
        uid_map,
        gid_map,
        time_offsets,
        mounts,
        devices,
        masked_paths,
        readonly_paths,
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
        sysctl,
        personality,
        process,
        seccomp,
        cgroups_path: linux
            .cgroups_path()
            .as_ref()
            .map(|c| c.to_string_lossy().into_owned()),
        resources: Some(resources),
        network,
        hooks: spec.hooks().clone().unwrap_or_default(),
        annotations,
    })
}

/// runc's device policy: the config's rules, then the devices every container may use, then
/// the config's device nodes. Later rules win, so a config's "deny all" keeps /dev/null usable.
fn with_default_device_rules(
    mut resources: LinuxResources,
    nodes: &[DeviceNode],
) -> LinuxResources {
    use oci_spec::runtime::LinuxDeviceCgroup;
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_owned()));
        r
    };
    let mut rules = resources.devices().clone().unwrap_or_default();
    rules.extend([
        rule(LinuxDeviceType::C, None, None, "m"),
        rule(LinuxDeviceType::B, None, None, "m"),
        rule(LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(5), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(7), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(8), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(9), "rwm"),
        rule(LinuxDeviceType::C, Some(5), Some(0), "rwm"),
        rule(LinuxDeviceType::C, Some(5), Some(1), "rwm"),
        rule(LinuxDeviceType::C, Some(5), Some(2), "rwm"),
        rule(LinuxDeviceType::C, Some(136), None, "rwm"),
        rule(LinuxDeviceType::C, Some(10), Some(200), "rwm"),
    ]);
    for n in nodes {
        let typ = match n.kind {
            libc::S_IFBLK => LinuxDeviceType::B,
            libc::S_IFIFO => continue,
            _ => LinuxDeviceType::C,
        };
        rules.push(rule(
            typ,
            i64::try_from(n.major).ok(),
            i64::try_from(n.minor).ok(),
            "rwm",
        ));
    }
    resources.set_devices(Some(rules));
    resources
}

fn plan_root(spec: &Spec, bundle: &Path, p: &mut Problems) -> Option<PathBuf> {
    let Some(root) = spec.root() else {
        p.push("root: missing");
        return None;
    };
    let path = bundle.join(root.path());
    match std::fs::canonicalize(&path) {
        Ok(abs) if abs.is_dir() => Some(abs),
        Ok(abs) => {
            p.push(format!("root.path: {} is not a directory", abs.display()));
            None
        }
        Err(e) => {
            p.push(format!("root.path: {}: {e}", path.display()));
            None
        }
    }
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME shares its bit with CSIGNAL's range; nix names it here.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

fn plan_namespaces(linux: &oci_spec::runtime::Linux, p: &mut Problems) -> NamespacePlan {
    let mut plan = NamespacePlan::default();
    let mut seen = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let flag = ns_flag(ns.typ());
        if seen.contains(&flag) {
            p.push(format!("linux.namespaces: {:?} listed twice", ns.typ()));
            continue;
        }
        seen.push(flag);
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                if !path.exists() {
                    p.push(format!(
                        "linux.namespaces: {:?} path {} does not exist",
                        ns.typ(),
                        path.display()
                    ));
                }
                plan.join.push((flag, path.clone()));
            }
            _ if flag == CloneFlags::CLONE_NEWUSER => plan.new_user = true,
            _ => plan.new |= flag,
        }
    }
    // The user namespace is joined first: the others may belong to it.
    plan.join
        .sort_by_key(|(f, _)| *f != CloneFlags::CLONE_NEWUSER);
    if !plan.has(CloneFlags::CLONE_NEWNS) {
        p.push("linux.namespaces: a mount namespace is required");
    }
    plan
}

fn id_maps(maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>) -> Vec<IdMap> {
    maps.iter()
        .flatten()
        .map(|m| IdMap {
            container_id: m.container_id(),
            host_id: m.host_id(),
            size: m.size(),
        })
        .collect()
}

fn plan_time_offsets(
    linux: &oci_spec::runtime::Linux,
    ns: &NamespacePlan,
    p: &mut Problems,
) -> Vec<(String, i64, u32)> {
    let mut out = Vec::new();
    for (clock, off) in linux.time_offsets().iter().flatten() {
        if !matches!(clock.as_str(), "monotonic" | "boottime") {
            p.push(format!(
                "linux.timeOffsets.{clock}: only monotonic and boottime can be offset"
            ));
            continue;
        }
        out.push((
            clock.clone(),
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0),
        ));
    }
    let new_time = ns
        .new
        .contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
    if !out.is_empty() && !new_time {
        p.push("linux.timeOffsets: offsets need a new time namespace");
    }
    out.sort();
    out
}

fn plan_devices(linux: &oci_spec::runtime::Linux, p: &mut Problems) -> Vec<DeviceNode> {
    let mut out = Vec::new();
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let field = format!("linux.devices[{i}]");
        let Some(path) = p.take(&field, clean_container_path(d.path())) else {
            continue;
        };
        if !path.starts_with("/dev") {
            p.push(format!(
                "{field}: path {} is not under /dev",
                path.display()
            ));
            continue;
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                p.push(format!("{field}: type \"a\" is not a device node type"));
                continue;
            }
        };
        let (Ok(major), Ok(minor)) = (u64::try_from(d.major()), u64::try_from(d.minor())) else {
            p.push(format!("{field}: negative major/minor"));
            continue;
        };
        out.push(DeviceNode {
            path,
            kind,
            major,
            minor,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    out
}

fn clean_paths(field: &str, paths: &Option<Vec<String>>, p: &mut Problems) -> Vec<PathBuf> {
    paths
        .iter()
        .flatten()
        .filter_map(|s| {
            p.take(
                &format!("{field} {s:?}"),
                clean_container_path(Path::new(s)),
            )
        })
        .collect()
}

/// runc's rule: only namespaced sysctls, and only when the container has that namespace.
fn check_sysctl(key: &str, ns: &NamespacePlan) -> Result<(), String> {
    let ipc = key.starts_with("kernel.msg")
        || key.starts_with("kernel.sem")
        || key.starts_with("kernel.shm")
        || key.starts_with("fs.mqueue.");
    if ipc {
        return if ns.has(CloneFlags::CLONE_NEWIPC) {
            Ok(())
        } else {
            Err("needs a new ipc namespace".into())
        };
    }
    if key.starts_with("net.") {
        return if ns.has(CloneFlags::CLONE_NEWNET) {
            Ok(())
        } else {
            Err("needs a new network namespace".into())
        };
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return if ns.has(CloneFlags::CLONE_NEWUTS) {
            Ok(())
        } else {
            Err("needs a new uts namespace".into())
        };
    }
    Err("is not namespaced: it would change the host".into())
}

fn plan_process(spec: &Spec, opts: &PlanOptions, p: &mut Problems) -> Option<ProcessPlan> {
    let Some(proc_) = spec.process() else {
        p.push("process: missing");
        return None;
    };
    Some(process_plan(proc_, opts.has_console_socket, p))
}

/// The plan of a process to exec into a running container (`husk exec`).
pub fn plan_exec_process(
    proc_: &Process,
    has_console_socket: bool,
) -> Result<ProcessPlan, Problems> {
    let mut p = Problems::default();
    let plan = process_plan(proc_, has_console_socket, &mut p);
    if p.0.is_empty() { Ok(plan) } else { Err(p) }
}

fn process_plan(proc_: &Process, has_console_socket: bool, p: &mut Problems) -> ProcessPlan {
    let args = proc_.args().clone().unwrap_or_default();
    if args.is_empty() {
        p.push("process.args: must name a program");
    }
    let env = proc_.env().clone().unwrap_or_default();
    for e in &env {
        if !e.contains('=') || e.starts_with('=') {
            p.push(format!("process.env: {e:?} is not KEY=VALUE"));
        }
    }
    if !proc_.cwd().is_absolute() {
        p.push(format!(
            "process.cwd: {:?} must be an absolute path",
            proc_.cwd()
        ));
    }
    let terminal = proc_.terminal().unwrap_or(false);
    if terminal && !has_console_socket {
        p.push("process.terminal: a terminal needs --console-socket");
    }
    if !terminal && has_console_socket {
        p.push(
            "process.terminal: false, but --console-socket was given (it only carries a terminal)",
        );
    }
    let console_size = proc_.console_size().as_ref().map(|b| {
        (
            u16::try_from(b.height()).unwrap_or(u16::MAX),
            u16::try_from(b.width()).unwrap_or(u16::MAX),
        )
    });
    let capabilities = proc_
        .capabilities()
        .as_ref()
        .and_then(|c| p.take("process.capabilities", capabilities::plan(c)));
    let rlimits = p
        .take(
            "process.rlimits",
            rlimits::plan(proc_.rlimits().as_deref().unwrap_or_default()),
        )
        .unwrap_or_default();
    let user = proc_.user();
    ProcessPlan {
        args,
        env,
        cwd: proc_.cwd().clone(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        terminal,
        console_size,
        no_new_privileges: proc_.no_new_privileges().unwrap_or(false),
        capabilities,
        rlimits,
        oom_score_adj: proc_.oom_score_adj(),
    }
}
