//! Loading the device program and attaching it to a cgroup v2 directory with bpf(2).
//!
//! Replacement on update: the ids of the programs attached directly to the cgroup are
//! queried first; the new program is attached with `BPF_F_ALLOW_MULTI` and the old ones are
//! detached afterwards. While both are attached the kernel requires both to allow, so the
//! container never gets more access than either rule set grants. If someone attached a
//! program without `BPF_F_ALLOW_MULTI`, attaching again with the same flags replaces it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use super::bpf_program::BpfInsn;
use super::error::CgroupError;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

const LICENSE: &str = "Apache-2.0";
const PROG_NAME: &[u8] = b"husk_devices";

/// `union bpf_attr`, as a zeroed, 8-byte aligned buffer larger than any kernel's version
/// of it: the kernel accepts a larger size when the tail is zero, and every field it
/// writes back (some newer kernels write fields past the ones we fill) lands inside.
#[repr(C, align(8))]
struct BpfAttr([u8; 256]);

impl BpfAttr {
    fn new() -> Self {
        Self([0; 256])
    }

    fn put_u32(&mut self, offset: usize, value: u32) {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }

    fn put_u64(&mut self, offset: usize, value: u64) {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
    }

    fn get_u32(&self, offset: usize) -> u32 {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&self.0[offset..offset + 4]);
        u32::from_ne_bytes(bytes)
    }
}

/// bpf(2). Returns the non-negative result or the OS error.
fn bpf(cmd: libc::c_int, attr: &mut BpfAttr) -> io::Result<libc::c_long> {
    loop {
        // SAFETY: `attr` is a valid, writable, 8-byte aligned buffer of the size passed;
        // every pointer stored in it by the callers points to memory that outlives this
        // call (the callers keep those buffers borrowed across it).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr.0.as_mut_ptr(),
                std::mem::size_of::<BpfAttr>(),
            )
        };
        if ret >= 0 {
            return Ok(ret);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn owned_fd(raw: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(raw).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `fd` as a new file descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads `insns` as a cgroup device program. On failure the verifier log is included.
pub(crate) fn load(insns: &[BpfInsn]) -> Result<OwnedFd, CgroupError> {
    match load_with_log(insns, None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            // Load again with a log buffer to say why the verifier refused.
            let mut log = vec![0u8; 64 * 1024];
            let source = match load_with_log(insns, Some(&mut log)) {
                Ok(fd) => return Ok(fd),
                Err(e) => e,
            };
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(CgroupError::BpfLoad {
                insns: insns.len(),
                log: if text.is_empty() {
                    first.to_string()
                } else {
                    text
                },
                source,
            })
        }
    }
}

fn load_with_log(insns: &[BpfInsn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = CString::new(LICENSE).map_err(io::Error::other)?;
    let count = u32::try_from(insns.len()).map_err(io::Error::other)?;
    let mut attr = BpfAttr::new();
    attr.put_u32(0, BPF_PROG_TYPE_CGROUP_DEVICE);
    attr.put_u32(4, count);
    attr.put_u64(8, insns.as_ptr() as u64);
    attr.put_u64(16, license.as_ptr() as u64);
    if let Some(log) = log {
        attr.put_u32(24, 1);
        attr.put_u32(28, u32::try_from(log.len()).map_err(io::Error::other)?);
        attr.put_u64(32, log.as_mut_ptr() as u64);
    }
    attr.0[48..48 + PROG_NAME.len()].copy_from_slice(PROG_NAME);
    attr.put_u32(68, BPF_CGROUP_DEVICE);
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    owned_fd(fd)
}

fn open_cgroup(dir: &Path) -> Result<OwnedFd, CgroupError> {
    open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| CgroupError::OpenDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Programs attached directly to a cgroup (not inherited) and the flags they were attached with.
pub(crate) struct Attached {
    pub ids: Vec<u32>,
    pub flags: u32,
}

/// Lists the device programs attached directly to the cgroup at `dir`.
pub(crate) fn query(dir: &Path) -> Result<Attached, CgroupError> {
    let cgroup = open_cgroup(dir)?;
    query_fd(&cgroup).map_err(|source| CgroupError::BpfQuery {
        path: dir.to_path_buf(),
        source,
    })
}

fn query_fd(cgroup: &OwnedFd) -> io::Result<Attached> {
    let mut capacity = 64usize;
    loop {
        let mut ids = vec![0u32; capacity];
        let mut attr = BpfAttr::new();
        attr.put_u32(0, fd_u32(cgroup));
        attr.put_u32(4, BPF_CGROUP_DEVICE);
        attr.put_u64(16, ids.as_mut_ptr() as u64);
        attr.put_u32(24, u32::try_from(capacity).map_err(io::Error::other)?);
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                let count = attr.get_u32(24) as usize;
                ids.truncate(count.min(capacity));
                return Ok(Attached {
                    ids,
                    flags: attr.get_u32(12),
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && capacity < 1 << 16 => {
                capacity = (attr.get_u32(24) as usize).max(capacity * 2);
            }
            Err(e) => return Err(e),
        }
    }
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    // File descriptors are never negative.
    fd.as_raw_fd().unsigned_abs()
}

/// Attaches `prog` to the cgroup at `dir`, replacing the device programs attached before.
pub(crate) fn attach_replacing(dir: &Path, prog: &OwnedFd) -> Result<(), CgroupError> {
    let cgroup = open_cgroup(dir)?;
    let old = query_fd(&cgroup).map_err(|source| CgroupError::BpfQuery {
        path: dir.to_path_buf(),
        source,
    })?;
    let exclusive = !old.ids.is_empty() && old.flags & BPF_F_ALLOW_MULTI == 0;
    // An exclusive attachment is replaced by attaching with the same flags; otherwise
    // add ours next to the old ones and detach them after.
    let flags = if exclusive {
        old.flags
    } else {
        BPF_F_ALLOW_MULTI
    };
    let mut attr = BpfAttr::new();
    attr.put_u32(0, fd_u32(&cgroup));
    attr.put_u32(4, fd_u32(prog));
    attr.put_u32(8, BPF_CGROUP_DEVICE);
    attr.put_u32(12, flags);
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|source| CgroupError::BpfAttach {
        path: dir.to_path_buf(),
        source,
    })?;
    if exclusive {
        return Ok(());
    }
    for id in old.ids {
        detach_id(&cgroup, id).map_err(|source| CgroupError::BpfDetach {
            path: dir.to_path_buf(),
            prog_id: id,
            source,
        })?;
    }
    Ok(())
}

fn detach_id(cgroup: &OwnedFd, id: u32) -> io::Result<()> {
    let mut attr = BpfAttr::new();
    attr.put_u32(0, id);
    let prog = match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
        Ok(fd) => owned_fd(fd)?,
        // Already gone (detached concurrently): nothing to do.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut attr = BpfAttr::new();
    attr.put_u32(0, fd_u32(cgroup));
    attr.put_u32(4, fd_u32(&prog));
    attr.put_u32(8, BPF_CGROUP_DEVICE);
    match bpf(BPF_PROG_DETACH, &mut attr) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}
