//! TCP listeners with an accept queue sized for a burst of clients.
//!
//! `tokio::net::TcpListener::bind` listens with std's backlog of 128. When
//! thousands of clients connect at once (every browser of a site after an
//! appliance restart or a network blip), the control thread accepts them
//! between TLS handshakes; a queue of 128 overflows, the kernel drops the
//! handshakes' last ACKs, and those clients wait for a retransmission a
//! second later. client-bench saw 51 such drops with 256 sign-ins in flight.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpSocket};

/// The accept queue asked for; the kernel caps it at `net.core.somaxconn`
/// (4,096 by default since Linux 5.4), the limit to raise beyond that.
pub const ACCEPT_QUEUE: u32 = 4096;

/// Binds `addr` (address reuse on, as `TcpListener::bind` does) and listens
/// with an accept queue of [`ACCEPT_QUEUE`].
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_QUEUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_accepts_on_the_port_it_was_given() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, connected) = tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        assert_eq!(accepted.unwrap().1, connected.unwrap().local_addr().unwrap());
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error() {
        let first = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(listen(first.local_addr().unwrap()).is_err());
    }
}
