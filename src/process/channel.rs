//! One typed channel between husk (the parent) and the container's init: a SOCK_SEQPACKET
//! socketpair carrying one JSON message per packet.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("create init channel")]
    Create(#[source] Errno),
    #[error("send on init channel")]
    Send(#[source] Errno),
    #[error("receive on init channel")]
    Recv(#[source] Errno),
    #[error("the other end of the init channel closed")]
    Closed,
    #[error("malformed message on init channel")]
    Decode(#[source] serde_json::Error),
}

/// From the container side (stage-1, then init) to husk.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    /// stage-1 made its user namespace: write uid_map/gid_map for it.
    WriteIdMaps,
    /// stage-1 forked init; this is its pid in husk's pid namespace.
    InitPid(i32),
    /// init finished its mounts: run prestart/createRuntime hooks and the network hook now.
    RunRuntimeHooks,
    /// init is set up and waits on the exec fifo.
    Ready,
    /// Something failed; init exits after sending this.
    Failed(String),
}

/// From husk to the container side.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// stage-1 is in its cgroup: go on.
    Proceed,
    IdMapsWritten,
    /// The hooks ran; `state` is the OCI state JSON for the hooks init runs itself.
    RuntimeHooksDone {
        state: String,
    },
}

pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair; both ends are close-on-exec.
    pub fn pair() -> Result<(Channel, Channel), ChannelError> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(ChannelError::Create)?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), ChannelError> {
        let body = serde_json::to_vec(msg).map_err(ChannelError::Decode)?;
        loop {
            match send(self.fd.as_raw_fd(), &body, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(ChannelError::Send(e)),
            }
        }
    }

    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, ChannelError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => return serde_json::from_slice(&buf[..n]).map_err(ChannelError::Decode),
                Err(Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(ChannelError::Recv(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_close_is_seen() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&ToParent::InitPid(42)).unwrap();
        b.send(&ToChild::Proceed).unwrap();
        assert!(matches!(
            b.recv::<ToParent>().unwrap(),
            ToParent::InitPid(42)
        ));
        assert!(matches!(a.recv::<ToChild>().unwrap(), ToChild::Proceed));
        drop(a);
        assert!(matches!(b.recv::<ToParent>(), Err(ChannelError::Closed)));
    }
}
