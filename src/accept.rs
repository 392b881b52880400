//! Accepting client connections for every listener (HTTP and gRPC alike): one slot per
//! connection under `max_connections`, `TCP_NODELAY`, back-off on a failed accept, and an end
//! when shutdown comes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The next client connection of `listener` (with `TCP_NODELAY` set) and the connection slot it
/// holds, or `None` once `shutdown` resolves. At `max_connections` it stops accepting (clients
/// wait in the backlog) rather than running out of file descriptors; a failed accept (out of
/// file descriptors and the like) backs off instead of spinning. Shared by the HTTP and gRPC
/// listeners.
pub async fn next_connection<F: Future<Output = ()>>(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut Pin<&mut F>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.as_mut() => return None,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer, permit));
                }
                Err(err) => {
                    tracing::warn!(%err, local = ?listener.local_addr().ok(), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.as_mut() => return None,
        }
    }
}
