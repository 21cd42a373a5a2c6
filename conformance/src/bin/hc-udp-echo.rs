//! `hc-udp-echo PORT`: answers every UDP datagram on PORT with the same bytes.
//!
//! busybox has no UDP server, so the network tests copy this program into a container to show
//! that a UDP port forward reaches it (see `conformance/tests/network.rs`).

use std::net::UdpSocket;
use std::process::ExitCode;

fn main() -> ExitCode {
    let port = std::env::args().nth(1).unwrap_or_default();
    let socket = match UdpSocket::bind(format!("0.0.0.0:{port}")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hc-udp-echo: bind udp port {port:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                if let Err(e) = socket.send_to(&buf[..n], peer) {
                    eprintln!("hc-udp-echo: answer {peer}: {e}");
                }
            }
            Err(e) => {
                eprintln!("hc-udp-echo: receive on udp port {port}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
