//! A UDP forwarder between one client and one server, with a kill switch: once
//! killed it silently drops every datagram in both directions, as a dead uplink does.
//! The demo and tests route a KWIK path through it to kill that path for real.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A running forwarder. Dropping it stops forwarding.
#[derive(Debug)]
pub struct UdpRelay {
    addr: SocketAddr,
    killed: Arc<AtomicBool>,
    forwarded: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl UdpRelay {
    /// Listens on `bind` and forwards to `upstream`. Must be called inside a tokio
    /// runtime.
    pub async fn start(bind: SocketAddr, upstream: SocketAddr) -> std::io::Result<Self> {
        let front = UdpSocket::bind(bind).await?;
        let back_bind = if upstream.is_ipv4() {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 0))
        };
        let back = UdpSocket::bind(back_bind).await?;
        back.connect(upstream).await?;
        let addr = front.local_addr()?;
        let killed = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (k, f) = (killed.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let mut a = vec![0u8; 65_536];
            let mut b = vec![0u8; 65_536];
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { continue };
                        if k.load(Ordering::Relaxed) { continue; }
                        client = Some(from);
                        if back.send(&a[..n]).await.is_ok() {
                            f.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    r = back.recv(&mut b) => {
                        let Ok(n) = r else { continue };
                        if k.load(Ordering::Relaxed) { continue; }
                        if let Some(c) = client {
                            if front.send_to(&b[..n], c).await.is_ok() {
                                f.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        });
        Ok(UdpRelay {
            addr,
            killed,
            forwarded,
            task,
        })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every datagram from now on (both directions), without any signal.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
    }

    /// Datagrams forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
