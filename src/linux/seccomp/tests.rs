#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
use super::*;
use crate::linux::seccomp::forked::{in_child, run};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

/// Builds a profile from JSON, as config.json would carry it.
fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).unwrap()
}

fn compiled(json: serde_json::Value) -> CompiledSeccomp {
    compile(&profile(json)).unwrap()
}

fn compile_err(json: serde_json::Value) -> String {
    compile(&profile(json)).unwrap_err().to_string()
}

/// A classic-BPF interpreter for the instructions the compiler emits, so the generated code
/// can be checked for every operator and boundary without a kernel.
fn run_filter(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_le_bytes());
    data.extend_from_slice(&arch.to_le_bytes());
    data.extend_from_slice(&0u64.to_le_bytes()); // instruction pointer
    for a in args {
        data.extend_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let insn = &program[pc];
        pc += 1;
        match insn.code {
            LD_ABS => {
                let at = insn.k as usize;
                acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
            }
            AND_K => acc &= insn.k,
            JA => pc += insn.k as usize,
            JEQ | JGT | JGE => {
                let taken = match insn.code {
                    JEQ => acc == insn.k,
                    JGT => acc > insn.k,
                    _ => acc >= insn.k,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            RET => return insn.k,
            other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
        }
    }
}

fn native(c: &CompiledSeccomp, nr: i64, args: [u64; 6]) -> u32 {
    run_filter(c.program(), AUDIT_ARCH_X86_64, nr as u32, args)
}

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

// --- pure: actions, defaults and validation ------------------------------------------------

#[test]
fn default_action_applies_to_unlisted_syscalls() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "write", "openat"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(native(&c, libc::SYS_read, [0; 6]), ALLOW);
    assert_eq!(native(&c, libc::SYS_write, [0; 6]), ALLOW);
    assert_eq!(native(&c, libc::SYS_openat, [0; 6]), ALLOW);
    assert_eq!(native(&c, libc::SYS_mkdir, [0; 6]), errno(libc::EPERM));
    assert_eq!(native(&c, libc::SYS_open, [0; 6]), errno(libc::EPERM));
}

#[test]
fn syscalls_newer_than_the_profile_get_enosys_when_the_default_denies() {
    let profile = |default: &str| {
        compiled(serde_json::json!({
            "defaultAction": default,
            "syscalls": [{"names": ["mkdir", "openat"], "action": "SCMP_ACT_LOG"}]
        }))
    };
    let deny = profile("SCMP_ACT_ERRNO");
    let enosys = errno(libc::ENOSYS);
    assert_eq!(
        native(&deny, libc::SYS_openat, [0; 6]),
        libc::SECCOMP_RET_LOG
    );
    assert_eq!(native(&deny, libc::SYS_openat + 1, [0; 6]), enosys);
    assert_eq!(native(&deny, libc::SYS_clone3, [0; 6]), enosys);
    assert_eq!(native(&deny, -1, [0; 6]), enosys);
    assert_eq!(
        native(&deny, libc::SYS_openat - 1, [0; 6]),
        errno(libc::EPERM)
    );
    assert_eq!(
        native(&profile("SCMP_ACT_KILL_PROCESS"), 5000, [0; 6]),
        enosys
    );
    for lets_through in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"] {
        let c = profile(lets_through);
        assert_ne!(
            native(&c, libc::SYS_clone3, [0; 6]),
            enosys,
            "{lets_through}"
        );
    }
    let empty = compiled(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO"}));
    assert_eq!(native(&empty, libc::SYS_clone3, [0; 6]), errno(libc::EPERM));
}

#[test]
fn every_action_maps_to_its_return_value() {
    let cases = [
        ("SCMP_ACT_KILL", libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", libc::SECCOMP_RET_KILL_PROCESS),
        ("SCMP_ACT_TRAP", libc::SECCOMP_RET_TRAP),
        ("SCMP_ACT_ERRNO", errno(libc::EPERM)),
        (
            "SCMP_ACT_TRACE",
            libc::SECCOMP_RET_TRACE | libc::EPERM as u32,
        ),
        ("SCMP_ACT_LOG", libc::SECCOMP_RET_LOG),
        ("SCMP_ACT_ALLOW", ALLOW),
    ];
    for (action, want) in cases {
        let c = compiled(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": action}]
        }));
        assert_eq!(native(&c, libc::SYS_getcwd, [0; 6]), want, "{action}");
        let d = compiled(serde_json::json!({"defaultAction": action}));
        assert_eq!(
            native(&d, libc::SYS_getcwd, [0; 6]),
            want,
            "default {action}"
        );
    }
    assert_eq!(supported_actions().len(), cases.len());
    for name in supported_actions() {
        assert!(cases.iter().any(|(a, _)| a == name), "{name}");
    }
}

#[test]
fn errno_values_come_from_errno_ret_and_default_errno_ret() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 7}
        ]
    }));
    assert_eq!(native(&c, libc::SYS_mkdir, [0; 6]), errno(libc::EACCES));
    assert_eq!(
        native(&c, libc::SYS_ptrace, [0; 6]),
        libc::SECCOMP_RET_TRACE | 7
    );
    assert_eq!(native(&c, libc::SYS_getpid, [0; 6]), errno(libc::ENOSYS));
}

#[test]
fn errno_ret_on_an_action_without_errno_is_an_error() {
    assert_eq!(
        compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]
        })),
        "seccomp syscalls[0]: SCMP_ACT_KILL takes no errno, but one is set (1)"
    );
    assert_eq!(
        compile_err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1})),
        "seccomp defaultAction: SCMP_ACT_ALLOW takes no errno, but one is set (1)"
    );
}

#[test]
fn errno_above_16_bits_is_an_error() {
    assert_eq!(
        compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}
            ]
        })),
        "seccomp syscalls[1]: errno 70000 does not fit in 16 bits"
    );
}

#[test]
fn notify_is_unsupported() {
    assert_eq!(
        compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        })),
        "seccomp syscalls[0]: SCMP_ACT_NOTIFY is not supported (husk has no seccomp notify support)"
    );
    assert!(
        compile_err(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}))
            .starts_with("seccomp defaultAction: SCMP_ACT_NOTIFY is not supported")
    );
}

#[test]
fn flags_map_to_seccomp_filter_flags() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    }));
    assert_eq!(c.flags, 0b111);
    assert_eq!(
        compiled(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"})).flags,
        0
    );
    for name in supported_flags() {
        let flag: LinuxSeccompFilterFlag = serde_json::from_value(serde_json::json!(name)).unwrap();
        assert!(filter_flags(&[flag]).is_ok(), "{name}");
    }
    assert_eq!(
        compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        })),
        "seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is not supported (it needs seccomp notify)"
    );
}

#[test]
fn entries_without_names_are_errors() {
    assert_eq!(
        compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]
        })),
        "seccomp syscalls[0]: no syscall names"
    );
    assert_eq!(
        compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]
        })),
        "seccomp syscalls[0].names[1]: empty syscall name"
    );
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(native(&c, libc::SYS_mkdir, [0; 6]), errno(libc::EPERM));
    // Only the prologue, one mkdir block and the default remain.
    let only_mkdir = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(c, only_mkdir);
}

#[test]
fn argument_index_above_five_is_an_error() {
    assert_eq!(
        compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                   {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
        })),
        "seccomp syscalls[0].args[1]: argument index 6 is above 5"
    );
}

#[test]
fn a_profile_over_4096_instructions_is_too_large() {
    // Entries with six conditions each on one syscall make the program grow without bound:
    // 140 entries of 6 * 5 + 1 instructions exceed the limit.
    let args: Vec<_> = (0..6)
        .map(|i| serde_json::json!({"index": i, "value": 1, "op": "SCMP_CMP_GT"}))
        .collect();
    let entries: Vec<_> = (0..140)
        .map(|_| serde_json::json!({"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": args}))
        .collect();
    let err =
        compile_err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": entries}));
    assert!(err.starts_with("seccomp filter needs "), "{err}");
    assert!(
        err.ends_with("instructions, more than the kernel's limit of 4096"),
        "{err}"
    );
}

// --- pure: architectures ----------------------------------------------------------------------

#[test]
fn foreign_abis_get_enosys_when_listed_and_kill_otherwise() {
    let listed = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    }));
    let kill = libc::SECCOMP_RET_KILL_PROCESS;
    let x32_read = X32_SYSCALL_BIT | libc::SYS_read as u32;
    assert_eq!(
        run_filter(listed.program(), AUDIT_ARCH_I386, 3, [0; 6]),
        errno(libc::ENOSYS)
    );
    assert_eq!(
        run_filter(listed.program(), AUDIT_ARCH_X86_64, x32_read, [0; 6]),
        errno(libc::ENOSYS)
    );
    assert_eq!(run_filter(listed.program(), 0xc000_00b7, 63, [0; 6]), kill); // aarch64
    assert_eq!(native(&listed, libc::SYS_read, [0; 6]), ALLOW);

    let bare = compiled(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    assert_eq!(run_filter(bare.program(), AUDIT_ARCH_I386, 3, [0; 6]), kill);
    assert_eq!(
        run_filter(bare.program(), AUDIT_ARCH_X86_64, x32_read, [0; 6]),
        kill
    );
    assert_eq!(native(&bare, -1, [0; 6]), ALLOW);
}

#[test]
fn other_architectures_are_ignored() {
    let with_arm = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    }));
    let native_only = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_NATIVE"]
    }));
    assert_eq!(with_arm, native_only);
    for name in known_archs() {
        let arch: Arch = serde_json::from_value(serde_json::json!(name)).unwrap();
        assert!(matches!(
            arch,
            Arch::ScmpArchX86 | Arch::ScmpArchX86_64 | Arch::ScmpArchX32
        ));
    }
}

// --- pure: argument comparisons ---------------------------------------------------------------

/// Compiles "getppid returns EACCES when arg1 <op> value (valueTwo)" over a default ALLOW and
/// reports whether `arg` matches.
fn matches(op: &str, value: u64, value_two: Option<u64>, arg: u64) -> bool {
    let mut cond = serde_json::json!({"index": 1, "value": value, "op": op});
    if let Some(v2) = value_two {
        cond["valueTwo"] = serde_json::json!(v2);
    }
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                      "args": [cond]}]
    }));
    match native(&c, libc::SYS_getppid, [7, arg, 7, 7, 7, 7]) {
        r if r == errno(libc::EACCES) => true,
        r if r == ALLOW => false,
        other => panic!("unexpected return {other:#x}"),
    }
}

#[test]
fn comparisons_use_all_64_bits_unsigned() {
    let v = 0x0000_0001_8000_0000u64;
    // Values around v, differing in the high word, the low word, or both.
    let around = [
        0,
        1,
        v - 1,
        v,
        v + 1,
        0x0000_0000_8000_0000,
        0x0000_0002_0000_0000,
        0x0000_0001_0000_0000,
        0x0000_0001_ffff_ffff,
        u64::MAX,
    ];
    for arg in around {
        assert_eq!(
            matches("SCMP_CMP_EQ", v, None, arg),
            arg == v,
            "EQ {arg:#x}"
        );
        assert_eq!(
            matches("SCMP_CMP_NE", v, None, arg),
            arg != v,
            "NE {arg:#x}"
        );
        assert_eq!(matches("SCMP_CMP_LT", v, None, arg), arg < v, "LT {arg:#x}");
        assert_eq!(
            matches("SCMP_CMP_LE", v, None, arg),
            arg <= v,
            "LE {arg:#x}"
        );
        assert_eq!(matches("SCMP_CMP_GT", v, None, arg), arg > v, "GT {arg:#x}");
        assert_eq!(
            matches("SCMP_CMP_GE", v, None, arg),
            arg >= v,
            "GE {arg:#x}"
        );
    }
    for op in supported_operators() {
        let _: LinuxSeccompOperator = serde_json::from_value(serde_json::json!(op)).unwrap();
    }
}

#[test]
fn masked_eq_compares_the_masked_argument_with_value_two() {
    let mask = 0xff00_0000_0000_00ffu64;
    let want = 0x1200_0000_0000_0034u64;
    for arg in [
        want,
        want | 0x00ff_ffff_ffff_ff00,
        0x1200_0000_0000_0035,
        0x1300_0000_0000_0034,
        0,
    ] {
        assert_eq!(
            matches("SCMP_CMP_MASKED_EQ", mask, Some(want), arg),
            arg & mask == want,
            "{arg:#x}"
        );
    }
    // Without valueTwo the masked bits must be zero.
    assert!(matches("SCMP_CMP_MASKED_EQ", 0x10, None, 0x0f));
    assert!(!matches("SCMP_CMP_MASKED_EQ", 0x10, None, 0x10));
}

#[test]
fn conditions_of_one_entry_must_all_hold() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                               {"index": 2, "value": 5, "op": "SCMP_CMP_GT"}]}]
    }));
    assert_eq!(
        native(&c, libc::SYS_getppid, [1, 0, 6, 0, 0, 0]),
        errno(libc::EPERM)
    );
    assert_eq!(native(&c, libc::SYS_getppid, [1, 0, 5, 0, 0, 0]), ALLOW);
    assert_eq!(native(&c, libc::SYS_getppid, [2, 0, 6, 0, 0, 0]), ALLOW);
}

#[test]
fn entries_for_the_same_syscall_are_alternatives() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    assert_eq!(native(&c, libc::SYS_getppid, [1, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        native(&c, libc::SYS_getppid, [2, 0, 0, 0, 0, 0]),
        libc::SECCOMP_RET_LOG
    );
    assert_eq!(
        native(&c, libc::SYS_getppid, [3, 0, 0, 0, 0, 0]),
        errno(libc::EPERM)
    );
}

#[test]
fn repeated_argument_conditions_are_alternatives_like_runc() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                               {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
    }));
    assert_eq!(native(&c, libc::SYS_personality, [0, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(native(&c, libc::SYS_personality, [8, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        native(&c, libc::SYS_personality, [9, 0, 0, 0, 0, 0]),
        errno(libc::EPERM)
    );
}

#[test]
fn conditional_entries_win_over_an_unconditional_one() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["getppid", "read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_TRAP",
             "args": [{"index": 3, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL"}
        ]
    }));
    assert_eq!(
        native(&c, libc::SYS_getppid, [0, 0, 0, 9, 0, 0]),
        libc::SECCOMP_RET_TRAP
    );
    // The later unconditional KILL does not replace the first unconditional ALLOW.
    assert_eq!(native(&c, libc::SYS_getppid, [0, 0, 0, 8, 0, 0]), ALLOW);
    assert_eq!(native(&c, libc::SYS_read, [0; 6]), ALLOW);
}

#[test]
fn every_syscall_name_resolves_to_its_libc_number() {
    assert_eq!(syscall_table::number("read"), Some(libc::SYS_read));
    assert_eq!(syscall_table::number("clone3"), Some(libc::SYS_clone3));
    assert_eq!(syscall_table::number("listns"), Some(470));
    assert_eq!(syscall_table::number("getxattrat"), Some(464));
    assert_eq!(syscall_table::number("CLONE"), None);
    let mut numbers = std::collections::HashSet::new();
    for name in syscall_table::NAMES {
        let nr = syscall_table::number(name).unwrap();
        assert!(numbers.insert(nr), "{name} shares number {nr}");
    }
    assert!(syscall_table::NAMES.len() > 370);
}

#[test]
fn a_docker_sized_allowlist_fits() {
    let names: Vec<&str> = syscall_table::NAMES.to_vec();
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    }));
    assert!(c.program().len() < MAX_INSNS);
    for name in syscall_table::NAMES {
        assert_eq!(
            native(&c, syscall_table::number(name).unwrap(), [0; 6]),
            ALLOW,
            "{name}"
        );
    }
    assert_eq!(native(&c, 1000, [0; 6]), errno(libc::ENOSYS));
    assert_eq!(native(&c, 335, [0; 6]), errno(libc::EPERM)); // a hole in the table
}

// --- kernel: install in a forked child --------------------------------------------------------

fn raw_getppid(args: [u64; 3]) -> (i64, i32) {
    // SAFETY: getppid ignores its arguments; the filter sees them in the registers.
    let rc = unsafe { libc::syscall(libc::SYS_getppid, args[0], args[1], args[2]) };
    (rc, nix::errno::Errno::last_raw())
}

fn expect_errno(what: &str, (rc, err): (i64, i32), want: i32) -> Result<(), String> {
    if rc == -1 && err == want {
        Ok(())
    } else {
        Err(format!("{what}: rc={rc} errno={err}, want errno {want}"))
    }
}

fn expect_ok(what: &str, (rc, err): (i64, i32)) -> Result<(), String> {
    if rc >= 0 {
        Ok(())
    } else {
        Err(format!("{what}: rc={rc} errno={err}"))
    }
}

#[test]
fn installed_filter_returns_errno_for_listed_calls_only() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
             "args": [{"index": 0, "value": 4_294_967_296u64, "op": "SCMP_CMP_GE"},
                      {"index": 1, "value": 3, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 1}]}
        ]
    }));
    in_child(|| {
        nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
        install(&c).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length.
        let rc = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
        expect_errno("getcwd", (rc, nix::errno::Errno::last_raw()), libc::EPERM)?;
        expect_errno(
            "getppid(2^32, 5)",
            raw_getppid([1 << 32, 5, 0]),
            libc::EXDEV,
        )?;
        expect_ok("getppid(2^32 - 1, 5)", raw_getppid([(1 << 32) - 1, 5, 0]))?;
        expect_ok("getppid(2^32, 6)", raw_getppid([1 << 32, 6, 0]))?;
        expect_ok("getpid", (nix::unistd::getpid().as_raw().into(), 0))?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn installed_allowlist_applies_the_default_action() {
    // What the child needs to report back and exit stays allowed; everything else gets EXDEV.
    let allowed = [
        "write",
        "exit_group",
        "exit",
        "brk",
        "mmap",
        "munmap",
        "mremap",
        "madvise",
        "futex",
        "rt_sigprocmask",
        "rt_sigaction",
        "sigaltstack",
        "close",
        "getpid",
    ];
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 18,
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"]
    }));
    in_child(|| {
        nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
        install(&c).map_err(|e| e.to_string())?;
        expect_errno("getppid", raw_getppid([0, 0, 0]), libc::EXDEV)?;
        // SAFETY: getuid has no arguments and cannot fail.
        let rc = unsafe { libc::syscall(libc::SYS_getuid) };
        expect_errno("getuid", (rc, nix::errno::Errno::last_raw()), libc::EXDEV)?;
        expect_ok("getpid", (nix::unistd::getpid().as_raw().into(), 0))
    })
    .unwrap();
}

#[test]
fn installed_kill_process_kills_with_sigsys() {
    let c = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
    }));
    let (status, message) = run(|| {
        nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
        install(&c).map_err(|e| e.to_string())?;
        let _ = raw_getppid([0, 0, 0]);
        Err("getppid returned".into())
    });
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?} {message}"
    );
}

#[test]
fn install_without_no_new_privs_or_cap_sys_admin_fails() {
    let c = compiled(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    in_child(|| {
        caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_ADMIN)
            .map_err(|e| e.to_string())?;
        match install(&c) {
            Err(err @ SeccompError::Install { .. }) => {
                let want = format!("seccomp(SECCOMP_SET_MODE_FILTER, flags=0x0) with {} instructions", c.program().len());
                let is_eacces = matches!(&err, SeccompError::Install { source, .. } if source.raw_os_error() == Some(libc::EACCES));
                if err.to_string() == want && is_eacces { Ok(()) } else { Err(format!("{err:?}")) }
            }
            other => Err(format!("unexpected result {other:?}")),
        }
    })
    .unwrap();
}
