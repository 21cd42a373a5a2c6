//! Compiling device rules into a `BPF_PROG_TYPE_CGROUP_DEVICE` program, by hand.
//!
//! The kernel calls the program with `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }` in r1, where `access_type` is `type | (access << 16)` (type 1 =
//! block, 2 = char; access bits mknod=1, read=2, write=4). It returns 1 to allow, 0 to deny.
//!
//! Shape of the program (rules as in [`super::devices`]: last match wins, per access bit):
//! ```text
//!   r2 = ctx.access_type & 0xffff   ; device type
//!   r3 = ctx.access_type >> 16      ; requested access bits
//!   r4 = ctx.major ; r5 = ctx.minor
//!   for bit in mknod, read, write:
//!       if r3 & bit == 0: goto next_bit
//!       for rule in rules, last first, naming bit:
//!           if rule does not match r2/r4/r5: goto next_rule
//!           allow ? goto next_bit : return 0
//!       return 0                     ; nothing matched: default deny
//!   next_bit: ...
//!   return 1
//! ```

use super::devices::{ACCESS_MKNOD, ACCESS_READ, ACCESS_WRITE, DeviceKind, DeviceRule};

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
pub const DEV_BLOCK: i32 = 1;
pub const DEV_CHAR: i32 = 2;

/// One eBPF instruction, laid out like the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    /// dst_reg in the low nibble and src_reg in the high nibble (little-endian bitfields).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcode pieces (linux/bpf_common.h, linux/bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU64: u8 = 0x07;
const BPF_JMP: u8 = 0x05;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

pub const OP_LDX_W: u8 = BPF_LDX | BPF_MEM | BPF_W;
pub const OP_AND_K: u8 = BPF_ALU64 | BPF_AND | BPF_K;
pub const OP_RSH_K: u8 = BPF_ALU64 | BPF_RSH | BPF_K;
pub const OP_MOV_K: u8 = BPF_ALU64 | BPF_MOV | BPF_K;
pub const OP_MOV_X: u8 = BPF_ALU64 | BPF_MOV | BPF_X;
pub const OP_JA: u8 = BPF_JMP | BPF_JA;
pub const OP_JEQ_K: u8 = BPF_JMP | BPF_JEQ | BPF_K;
pub const OP_JNE_K: u8 = BPF_JMP | BPF_JNE | BPF_K;
pub const OP_EXIT: u8 = BPF_JMP | BPF_EXIT;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn regs(dst: u8, src: u8) -> u8 {
    if cfg!(target_endian = "little") {
        (dst & 0x0f) | (src << 4)
    } else {
        (dst << 4) | (src & 0x0f)
    }
}

/// Splits `regs` back into (dst, src).
pub fn unpack_regs(regs: u8) -> (u8, u8) {
    if cfg!(target_endian = "little") {
        (regs & 0x0f, regs >> 4)
    } else {
        (regs >> 4, regs & 0x0f)
    }
}

#[derive(Clone, Copy)]
struct Label(usize);

/// A tiny assembler: instructions plus forward jumps patched when labels are placed.
#[derive(Default)]
struct Asm {
    insns: Vec<BpfInsn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn place(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(BpfInsn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        });
    }

    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.emit(code, dst, 0, 0, imm);
    }

    fn ret(&mut self, value: i32) {
        self.emit(OP_MOV_K, R0, 0, 0, value);
        self.emit(OP_EXIT, 0, 0, 0, 0);
    }

    fn finish(mut self) -> Result<Vec<BpfInsn>, String> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label.0].ok_or("jump to a label never placed")?;
            let off = i64::try_from(target).map_err(|e| e.to_string())?
                - i64::try_from(at).map_err(|e| e.to_string())?
                - 1;
            self.insns[at].off = i16::try_from(off)
                .map_err(|_| format!("jump offset {off} does not fit 16 bits (too many rules)"))?;
        }
        Ok(self.insns)
    }
}

/// Compiles `rules` into the program described in the module documentation.
pub fn compile(rules: &[DeviceRule]) -> Result<Vec<BpfInsn>, String> {
    let mut asm = Asm::default();
    // Offsets in struct bpf_cgroup_dev_ctx.
    asm.emit(OP_LDX_W, R2, R1, 0, 0);
    asm.emit(OP_MOV_X, R3, R2, 0, 0);
    asm.emit(OP_AND_K, R2, 0, 0, 0xffff);
    asm.emit(OP_RSH_K, R3, 0, 0, 16);
    asm.emit(OP_LDX_W, R4, R1, 4, 0);
    asm.emit(OP_LDX_W, R5, R1, 8, 0);
    for bit in [ACCESS_MKNOD, ACCESS_READ, ACCESS_WRITE] {
        let next_bit = asm.label();
        // r0 is free scratch until the final return.
        asm.emit(OP_MOV_X, R0, R3, 0, 0);
        asm.emit(OP_AND_K, R0, 0, 0, bit as i32);
        asm.jump(OP_JEQ_K, R0, 0, next_bit);
        // The verifier rejects unreachable instructions, so stop after a rule that
        // matches unconditionally: nothing after it (not even the default) can run.
        let mut decided = false;
        for rule in rules.iter().rev().filter(|r| r.access & bit != 0) {
            if rule.kind == DeviceKind::All {
                if rule.allow {
                    asm.jump(OP_JA, 0, 0, next_bit);
                } else {
                    asm.ret(0);
                }
                decided = true;
                break;
            }
            let next_rule = asm.label();
            let kind = if rule.kind == DeviceKind::Block {
                DEV_BLOCK
            } else {
                DEV_CHAR
            };
            asm.jump(OP_JNE_K, R2, kind, next_rule);
            if let Some(major) = rule.major {
                asm.jump(OP_JNE_K, R4, imm(major)?, next_rule);
            }
            if let Some(minor) = rule.minor {
                asm.jump(OP_JNE_K, R5, imm(minor)?, next_rule);
            }
            if rule.allow {
                asm.jump(OP_JA, 0, 0, next_bit);
            } else {
                asm.ret(0);
            }
            asm.place(next_rule);
        }
        if !decided {
            asm.ret(0);
        }
        asm.place(next_bit);
    }
    asm.ret(1);
    asm.finish()
}

fn imm(n: u32) -> Result<i32, String> {
    i32::try_from(n).map_err(|_| format!("device number {n} does not fit an immediate"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
pub(crate) mod tests {
    use super::*;
    use crate::cgroups::devices::tests::oci;
    use crate::cgroups::devices::{ACCESS_ALL, allowed, parse_rules};
    use oci_spec::runtime::LinuxDeviceType;

    /// Interprets the subset of eBPF that `compile` emits, like the kernel would run it.
    pub(crate) fn run(prog: &[BpfInsn], access_type: u32, major: u32, minor: u32) -> u64 {
        let ctx = [access_type, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 100_000, "runaway program");
            let insn = prog[pc];
            let (dst, src) = unpack_regs(insn.regs);
            let (dst, src) = (dst as usize, src as usize);
            let k = insn.imm as i64 as u64;
            pc += 1;
            match insn.code {
                OP_LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[insn.off as usize / 4]);
                }
                OP_MOV_X => r[dst] = r[src],
                OP_MOV_K => r[dst] = k,
                OP_AND_K => r[dst] &= k,
                OP_RSH_K => r[dst] >>= k,
                OP_JA => pc = (pc as i64 + i64::from(insn.off)) as usize,
                OP_JEQ_K | OP_JNE_K => {
                    let equal = r[dst] == k;
                    if equal == (insn.code == OP_JEQ_K) {
                        pc = (pc as i64 + i64::from(insn.off)) as usize;
                    }
                }
                OP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    /// Every instruction must be reachable (the kernel verifier refuses dead code), and
    /// every jump must land inside the program.
    pub(crate) fn assert_all_reachable(prog: &[BpfInsn]) {
        let mut seen = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(pc < prog.len(), "jump out of the program");
            if std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            let insn = prog[pc];
            let target = (pc as i64 + 1 + i64::from(insn.off)) as usize;
            match insn.code {
                OP_EXIT => {}
                OP_JA => todo.push(target),
                OP_JEQ_K | OP_JNE_K => todo.extend([pc + 1, target]),
                _ => todo.push(pc + 1),
            }
        }
        let dead: Vec<usize> = (0..prog.len()).filter(|&i| !seen[i]).collect();
        assert!(dead.is_empty(), "unreachable instructions {dead:?}");
    }

    fn ask(prog: &[BpfInsn], kind: DeviceKind, major: u32, minor: u32, access: u32) -> bool {
        let t = match kind {
            DeviceKind::Block => DEV_BLOCK as u32,
            _ => DEV_CHAR as u32,
        };
        run(prog, t | (access << 16), major, minor) == 1
    }

    #[test]
    fn program_agrees_with_reference_evaluation() {
        use LinuxDeviceType::{A, B, C};
        let rule_sets = vec![
            vec![],
            vec![oci(true, Some(A), None, None, "rwm")],
            vec![
                oci(false, None, None, None, "rwm"),
                oci(true, Some(C), Some(1), Some(3), "rwm"),
                oci(true, Some(C), Some(1), Some(5), "r"),
                oci(true, Some(C), Some(1), Some(5), "w"),
                oci(true, Some(B), Some(8), None, "m"),
            ],
            vec![
                oci(true, Some(A), None, None, "rwm"),
                oci(false, Some(C), Some(1), Some(3), "w"),
                oci(false, Some(B), None, None, "rwm"),
                oci(true, Some(B), Some(8), Some(0), "r"),
            ],
            vec![
                oci(true, Some(C), None, Some(3), ""),
                oci(false, Some(A), Some(1), None, "m"),
            ],
        ];
        for rules in rule_sets {
            let parsed = parse_rules(&rules).unwrap();
            let prog = compile(&parsed).unwrap();
            assert_all_reachable(&prog);
            for kind in [DeviceKind::Char, DeviceKind::Block] {
                for (major, minor) in [(1, 3), (1, 5), (8, 0), (8, 1), (4, 3), (0, 0)] {
                    for access in 1..=ACCESS_ALL {
                        assert_eq!(
                            ask(&prog, kind, major, minor, access),
                            allowed(&parsed, kind, major, minor, access),
                            "{rules:?} {kind:?} {major}:{minor} access {access}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn empty_rules_deny_everything_and_allow_all_allows() {
        let deny = compile(&[]).unwrap();
        assert_all_reachable(&deny);
        assert!(!ask(&deny, DeviceKind::Char, 1, 3, ACCESS_READ));
        let rules = parse_rules(&[oci(true, None, None, None, "")]).unwrap();
        let allow = compile(&rules).unwrap();
        assert_all_reachable(&allow);
        assert!(ask(&allow, DeviceKind::Block, 259, 1, ACCESS_ALL));
    }

    #[test]
    fn too_many_rules_is_an_error_not_a_bad_jump() {
        let rule = oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm");
        let rules = parse_rules(&vec![rule; 12_000]).unwrap();
        assert!(compile(&rules).is_err());
    }
}
