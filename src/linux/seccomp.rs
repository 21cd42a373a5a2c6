//! Seccomp (`linux.seccomp`): compile the OCI profile to a classic BPF program, install it.
//!
//! `compile` runs in the runtime before the init process is cloned, so every error in the
//! profile is reported before anything exists; the init process only calls `install`, as
//! late as it can, because every syscall init makes afterwards is filtered too: last when
//! `process.noNewPrivileges` is set, otherwise just before dropping capabilities (without
//! no_new_privs the kernel requires CAP_SYS_ADMIN to install a filter).
//!
//! Only native x86_64 rules are compiled. Syscalls made through the 32-bit ABIs (x86 via
//! `int 0x80`, x32 via `__X32_SYSCALL_BIT`) cannot match x86_64 numbers: they fail with
//! ENOSYS when the profile lists that architecture and kill the process otherwise (as a
//! libseccomp filter does for an architecture it was not given). Other architectures in the
//! profile can never occur on this machine and are ignored with a warning.
//!
//! Rule semantics follow runc: conditions of one syscall entry must all hold (AND); several
//! entries for the same syscall are alternatives (OR); an entry with several conditions on
//! the same argument is split into one alternative per condition (runc's workaround for a
//! libseccomp limitation, kept so profiles written for runc behave the same). For one syscall,
//! entries with conditions are tried before an entry without, and the first match wins.
//! Unknown syscall names are skipped with a warning. When the default action denies,
//! syscall numbers above the highest one the profile names get ENOSYS (as runc does).

#[cfg(test)]
pub(crate) mod forked;
mod syscall_table;

use std::collections::HashMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use seccompiler::{BpfProgram, sock_filter};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp {field}: {action} is not supported (husk has no seccomp notify support)")]
    UnsupportedAction {
        field: String,
        action: LinuxSeccompAction,
    },
    #[error("seccomp {field}: {action} takes no errno, but one is set ({errno})")]
    ErrnoNotAllowed {
        field: String,
        action: LinuxSeccompAction,
        errno: u32,
    },
    #[error("seccomp {field}: errno {errno} does not fit in 16 bits")]
    ErrnoTooLarge { field: String, errno: u32 },
    #[error("seccomp flag {flag} is not supported (it needs seccomp notify)")]
    UnsupportedFlag { flag: LinuxSeccompFilterFlag },
    #[error("seccomp syscalls[{entry}]: no syscall names")]
    NoNames { entry: usize },
    #[error("seccomp syscalls[{entry}].names[{name}]: empty syscall name")]
    EmptyName { entry: usize, name: usize },
    #[error("seccomp syscalls[{entry}].args[{arg}]: argument index {index} is above 5")]
    ArgIndex {
        entry: usize,
        arg: usize,
        index: usize,
    },
    #[error("seccomp filter needs {len} instructions, more than the kernel's limit of 4096")]
    TooLarge { len: usize },
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, flags={flags:#x}) with {len} instructions")]
    Install {
        flags: u32,
        len: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): thread {tid} could not be synchronized")]
    ThreadSync { tid: i64 },
}

/// A compiled profile, ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSeccomp {
    program: BpfProgram,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2), from `linux.seccomp.flags`.
    pub flags: u32,
}

impl CompiledSeccomp {
    /// The BPF instructions.
    pub fn program(&self) -> &[sock_filter] {
        &self.program
    }
}

/// Actions `compile` accepts (for `husk features`).
pub fn supported_actions() -> &'static [&'static str] {
    &[
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_LOG",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_TRAP",
    ]
}

/// Argument operators `compile` accepts (for `husk features`).
pub fn supported_operators() -> &'static [&'static str] {
    &[
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_LE",
        "SCMP_CMP_LT",
        "SCMP_CMP_MASKED_EQ",
        "SCMP_CMP_NE",
    ]
}

/// Architectures that mean something on this machine (for `husk features`).
pub fn known_archs() -> &'static [&'static str] {
    &["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]
}

/// Filter flags `compile` accepts (for `husk features`).
pub fn supported_flags() -> &'static [&'static str] {
    &[
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ]
}

/// What the filter returns for a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    KillProcess,
    KillThread,
    Trap,
    Errno(u16),
    Trace(u16),
    Log,
    Allow,
}

impl Action {
    /// Whether the syscall still runs (TRACE counts: a tracer handles unknown syscalls).
    fn lets_through(self) -> bool {
        matches!(self, Action::Allow | Action::Log | Action::Trace(_))
    }

    /// The `SECCOMP_RET_*` value.
    fn ret(self) -> u32 {
        match self {
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            Action::KillThread => libc::SECCOMP_RET_KILL_THREAD,
            Action::Trap => libc::SECCOMP_RET_TRAP,
            Action::Errno(errno) => libc::SECCOMP_RET_ERRNO | u32::from(errno),
            Action::Trace(msg) => libc::SECCOMP_RET_TRACE | u32::from(msg),
            Action::Log => libc::SECCOMP_RET_LOG,
            Action::Allow => libc::SECCOMP_RET_ALLOW,
        }
    }
}

/// Resolves an OCI action and its optional errno; `field` names it in errors.
fn resolve_action(
    field: &str,
    action: LinuxSeccompAction,
    errno: Option<u32>,
) -> Result<Action, SeccompError> {
    let data = |errno: Option<u32>| -> Result<u16, SeccompError> {
        let errno = errno.unwrap_or(libc::EPERM as u32);
        u16::try_from(errno).map_err(|_| SeccompError::ErrnoTooLarge {
            field: field.to_string(),
            errno,
        })
    };
    let no_errno = |resolved: Action| match errno {
        None => Ok(resolved),
        Some(errno) => Err(SeccompError::ErrnoNotAllowed {
            field: field.to_string(),
            action,
            errno,
        }),
    };
    match action {
        LinuxSeccompAction::ScmpActErrno => Ok(Action::Errno(data(errno)?)),
        LinuxSeccompAction::ScmpActTrace => Ok(Action::Trace(data(errno)?)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            no_errno(Action::KillThread)
        }
        LinuxSeccompAction::ScmpActKillProcess => no_errno(Action::KillProcess),
        LinuxSeccompAction::ScmpActTrap => no_errno(Action::Trap),
        LinuxSeccompAction::ScmpActLog => no_errno(Action::Log),
        LinuxSeccompAction::ScmpActAllow => no_errno(Action::Allow),
        LinuxSeccompAction::ScmpActNotify => Err(SeccompError::UnsupportedAction {
            field: field.to_string(),
            action,
        }),
    }
}

/// A comparison of one 64-bit syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Condition {
    arg: u8,
    op: LinuxSeccompOperator,
    value: u64,
    /// The value `arg & value` must equal, for SCMP_CMP_MASKED_EQ.
    masked: u64,
}

/// Conditions that must all hold, and the action when they do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    conditions: Vec<Condition>,
    action: Action,
}

/// Everything the profile says about one syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SyscallRules {
    nr: u32,
    /// Tried in order; the first whose conditions hold decides.
    conditional: Vec<Rule>,
    /// The action when no conditional rule matched; the default action if `None`.
    unconditional: Option<Action>,
}

/// Which 32-bit x86 ABIs the profile lists (their syscalls also reach an x86_64 filter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ForeignAbis {
    x86: bool,
    x32: bool,
}

/// Compiles `linux.seccomp` to a BPF program for native x86_64 and resolves its flags.
pub fn compile(spec: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    let default = resolve_action(
        "defaultAction",
        spec.default_action(),
        spec.default_errno_ret(),
    )?;
    let abis = foreign_abis(spec.architectures().as_deref().unwrap_or_default());
    let flags = filter_flags(spec.flags().as_deref().unwrap_or_default())?;
    if spec.listener_path().is_some() {
        log::debug!("seccomp listenerPath is set but no action uses it; ignored");
    }
    let syscalls = rules(spec)?;
    let program = assemble(default, abis, &syscalls)?;
    Ok(CompiledSeccomp { program, flags })
}

fn foreign_abis(archs: &[Arch]) -> ForeignAbis {
    let mut abis = ForeignAbis::default();
    for arch in archs {
        match arch {
            Arch::ScmpArchNative | Arch::ScmpArchX86_64 => {}
            Arch::ScmpArchX86 => abis.x86 = true,
            Arch::ScmpArchX32 => abis.x32 = true,
            other => log::debug!("seccomp architecture {other} cannot occur on x86_64; ignored"),
        }
    }
    abis
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> Result<u32, SeccompError> {
    let mut bits = 0;
    for flag in flags {
        bits |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(SeccompError::UnsupportedFlag { flag: *flag });
            }
        };
    }
    // The three accepted flags are bits 0..=2.
    Ok(bits as u32)
}

fn condition(entry: usize, arg: usize, spec: &LinuxSeccompArg) -> Result<Condition, SeccompError> {
    let index = spec.index();
    let arg_index = u8::try_from(index)
        .ok()
        .filter(|i| *i <= 5)
        .ok_or(SeccompError::ArgIndex { entry, arg, index })?;
    Ok(Condition {
        arg: arg_index,
        op: spec.op(),
        value: spec.value(),
        masked: spec.value_two().unwrap_or(0),
    })
}

/// Groups the profile's entries by syscall number, in order of first appearance.
fn rules(spec: &LinuxSeccomp) -> Result<Vec<SyscallRules>, SeccompError> {
    let mut out: Vec<SyscallRules> = Vec::new();
    let mut slot: HashMap<u32, usize> = HashMap::new();
    for (entry, syscall) in spec.syscalls().iter().flatten().enumerate() {
        let field = format!("syscalls[{entry}]");
        let action = resolve_action(&field, syscall.action(), syscall.errno_ret())?;
        let conditions = syscall
            .args()
            .iter()
            .flatten()
            .enumerate()
            .map(|(arg, spec)| condition(entry, arg, spec))
            .collect::<Result<Vec<_>, _>>()?;
        let alternatives = split_repeated_args(conditions);
        if syscall.names().is_empty() {
            return Err(SeccompError::NoNames { entry });
        }
        for (name_index, name) in syscall.names().iter().enumerate() {
            if name.is_empty() {
                return Err(SeccompError::EmptyName {
                    entry,
                    name: name_index,
                });
            }
            let Some(nr) = syscall_table::number(name).and_then(|nr| u32::try_from(nr).ok()) else {
                log::debug!("seccomp {field}: syscall {name} is unknown on x86_64; skipped");
                continue;
            };
            let i = *slot.entry(nr).or_insert_with(|| {
                out.push(SyscallRules {
                    nr,
                    conditional: Vec::new(),
                    unconditional: None,
                });
                out.len() - 1
            });
            let rules = &mut out[i];
            if alternatives.is_empty() {
                match rules.unconditional {
                    None => rules.unconditional = Some(action),
                    Some(first) if first != action => log::debug!(
                        "seccomp {field}: syscall {name} already has action {first:?}; \
                         {action:?} ignored"
                    ),
                    Some(_) => {}
                }
            } else {
                rules.conditional.extend(alternatives.iter().map(|c| Rule {
                    conditions: c.clone(),
                    action,
                }));
            }
        }
    }
    Ok(out)
}

/// One rule with all conditions, or, when an argument is compared more than once, one rule
/// per condition (runc's behaviour). Empty when there are no conditions.
fn split_repeated_args(conditions: Vec<Condition>) -> Vec<Vec<Condition>> {
    if conditions.is_empty() {
        return Vec::new();
    }
    let mut seen = [false; 6];
    let repeated = conditions
        .iter()
        .any(|c| std::mem::replace(&mut seen[usize::from(c.arg)], true));
    if repeated {
        conditions.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conditions]
    }
}

// --- BPF code generation -------------------------------------------------------------------

/// `AUDIT_ARCH_X86_64` from linux/audit.h (EM_X86_64 | 64BIT | LE).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386` from linux/audit.h (EM_386 | LE).
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 syscalls arrive with this bit set in the number, under AUDIT_ARCH_X86_64.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARGS_OFFSET: u32 = 16;
const MAX_INSNS: usize = 4096;

const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// A conditional jump target inside one rule: a fixed skip, or "this rule does not match".
#[derive(Clone, Copy)]
enum Target {
    Skip(u8),
    Fail,
}

/// An instruction of a rule before its failure jumps are resolved.
struct Pending {
    code: u16,
    k: u32,
    jt: Target,
    jf: Target,
}

impl Pending {
    fn stmt(code: u16, k: u32) -> Self {
        Pending {
            code,
            k,
            jt: Target::Skip(0),
            jf: Target::Skip(0),
        }
    }

    fn jump(code: u16, k: u32, jt: Target, jf: Target) -> Self {
        Pending { code, k, jt, jf }
    }
}

/// Code that falls through when the condition holds and jumps to `Fail` otherwise. The
/// 64-bit argument is compared as two 32-bit halves (little endian: low word first).
fn condition_code(c: &Condition) -> Vec<Pending> {
    use LinuxSeccompOperator as Op;
    use Target::{Fail, Skip};
    let lo_offset = ARGS_OFFSET + 8 * u32::from(c.arg);
    let hi_offset = lo_offset + 4;
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    let ld = Pending::stmt;
    match c.op {
        Op::ScmpCmpEq => vec![
            ld(LD_ABS, hi_offset),
            Pending::jump(JEQ, hi, Skip(0), Fail),
            ld(LD_ABS, lo_offset),
            Pending::jump(JEQ, lo, Skip(0), Fail),
        ],
        Op::ScmpCmpNe => vec![
            ld(LD_ABS, hi_offset),
            Pending::jump(JEQ, hi, Skip(0), Skip(2)), // high words differ: holds
            ld(LD_ABS, lo_offset),
            Pending::jump(JEQ, lo, Fail, Skip(0)),
        ],
        // arg > v: hi > vhi, or hi == vhi and lo > vlo (and >= for GE).
        Op::ScmpCmpGt | Op::ScmpCmpGe => vec![
            ld(LD_ABS, hi_offset),
            Pending::jump(JGT, hi, Skip(3), Skip(0)),
            Pending::jump(JEQ, hi, Skip(0), Fail),
            ld(LD_ABS, lo_offset),
            Pending::jump(
                if c.op == Op::ScmpCmpGt { JGT } else { JGE },
                lo,
                Skip(0),
                Fail,
            ),
        ],
        // arg < v is !(arg >= v); arg <= v is !(arg > v).
        Op::ScmpCmpLt | Op::ScmpCmpLe => vec![
            ld(LD_ABS, hi_offset),
            Pending::jump(JGT, hi, Fail, Skip(0)),
            Pending::jump(JEQ, hi, Skip(0), Skip(2)), // high word below: holds
            ld(LD_ABS, lo_offset),
            Pending::jump(
                if c.op == Op::ScmpCmpLt { JGE } else { JGT },
                lo,
                Fail,
                Skip(0),
            ),
        ],
        // (arg & value) == valueTwo
        Op::ScmpCmpMaskedEq => vec![
            ld(LD_ABS, hi_offset),
            Pending::stmt(AND_K, hi),
            Pending::jump(JEQ, (c.masked >> 32) as u32, Skip(0), Fail),
            ld(LD_ABS, lo_offset),
            Pending::stmt(AND_K, lo),
            Pending::jump(JEQ, c.masked as u32, Skip(0), Fail),
        ],
    }
}

/// A rule: its conditions, then `ret action`; a failed condition jumps past the `ret`.
fn rule_code(rule: &Rule) -> Result<Vec<sock_filter>, SeccompError> {
    let pending: Vec<Pending> = rule.conditions.iter().flat_map(condition_code).collect();
    let end = pending.len() + 1; // index just past the `ret`
    let mut code = Vec::with_capacity(end);
    for (pos, p) in pending.iter().enumerate() {
        let resolve = |t: Target| match t {
            Target::Skip(n) => Ok(n),
            // At most six conditions of at most six instructions: always fits in a u8.
            Target::Fail => {
                u8::try_from(end - pos - 1).map_err(|_| SeccompError::TooLarge { len: end })
            }
        };
        code.push(jump(p.code, p.k, resolve(p.jt)?, resolve(p.jf)?));
    }
    code.push(stmt(RET, rule.action.ret()));
    Ok(code)
}

/// The code for one syscall number. The accumulator holds the syscall number on entry and
/// still holds it when the block is skipped; once entered, the block always returns.
fn syscall_code(s: &SyscallRules, default: Action) -> Result<Vec<sock_filter>, SeccompError> {
    let fallback = s.unconditional.unwrap_or(default);
    if s.conditional.is_empty() {
        return Ok(vec![jump(JEQ, s.nr, 0, 1), stmt(RET, fallback.ret())]);
    }
    let mut body = Vec::new();
    for rule in &s.conditional {
        body.extend(rule_code(rule)?);
    }
    body.push(stmt(RET, fallback.ret()));
    let skip = u32::try_from(body.len()).map_err(|_| SeccompError::TooLarge { len: body.len() })?;
    let mut code = vec![jump(JEQ, s.nr, 1, 0), stmt(JA, skip)];
    code.extend(body);
    Ok(code)
}

fn assemble(
    default: Action,
    abis: ForeignAbis,
    syscalls: &[SyscallRules],
) -> Result<BpfProgram, SeccompError> {
    let foreign = |listed: bool| {
        if listed {
            Action::Errno(libc::ENOSYS as u16)
        } else {
            Action::KillProcess
        }
    };
    let mut program = vec![
        stmt(LD_ABS, ARCH_OFFSET),
        jump(JEQ, AUDIT_ARCH_X86_64, 3, 0),
        jump(JEQ, AUDIT_ARCH_I386, 0, 1),
        stmt(RET, foreign(abis.x86).ret()),
        stmt(RET, Action::KillProcess.ret()),
        stmt(LD_ABS, NR_OFFSET),
        // x32 numbers have the x32 bit set; -1 (0xffffffff) is not x32 and goes on to the
        // rules like any unknown number.
        jump(JGE, X32_SYSCALL_BIT, 0, 2),
        jump(JEQ, u32::MAX, 1, 0),
        stmt(RET, foreign(abis.x32).ret()),
    ];
    // Like runc: when the default denies, syscalls newer than every syscall the profile
    // names get ENOSYS instead, so programs fall back to older syscalls (as they would on an
    // older kernel) rather than fail on a permission error.
    let newest = syscalls.iter().map(|s| s.nr).max();
    if let Some(newest) = newest.filter(|_| !default.lets_through()) {
        program.push(jump(JGT, newest, 0, 1));
        program.push(stmt(RET, Action::Errno(libc::ENOSYS as u16).ret()));
    }
    for s in syscalls {
        program.extend(syscall_code(s, default)?);
    }
    program.push(stmt(RET, default.ret()));
    if program.len() > MAX_INSNS {
        return Err(SeccompError::TooLarge { len: program.len() });
    }
    Ok(program)
}

// --- installation ----------------------------------------------------------------------------

// seccompiler's `sock_filter` is declared #[repr(C)] with the same fields as the kernel's
// `struct sock_filter`, which libc mirrors; `install` relies on the two layouts matching.
const _: () = assert!(
    std::mem::size_of::<sock_filter>() == std::mem::size_of::<libc::sock_filter>()
        && std::mem::align_of::<sock_filter>() == std::mem::align_of::<libc::sock_filter>()
);

/// Installs the filter on the calling thread (on every thread with TSYNC).
///
/// The kernel accepts a filter only from a thread with no_new_privs set or with
/// CAP_SYS_ADMIN: when `process.noNewPrivileges` is false, init must install the filter
/// before dropping capabilities.
pub fn install(c: &CompiledSeccomp) -> Result<(), SeccompError> {
    let len = c.program.len();
    let prog = libc::sock_fprog {
        // `compile` caps the program at 4096 instructions.
        len: len as libc::c_ushort,
        filter: c.program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `prog` points at `len` initialised instructions whose layout matches the
    // kernel's (checked above); the kernel copies them and does not write through the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(c.flags),
            &prog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(()),
        tid if tid > 0 => Err(SeccompError::ThreadSync { tid }),
        _ => Err(SeccompError::Install {
            flags: c.flags,
            len,
            source: std::io::Error::last_os_error(),
        }),
    }
}

#[cfg(test)]
mod tests;
