//! A loopback UDP impairment relay on tokio.
//!
//! A [`Relay`] listens on `127.0.0.1:0` (or `[::1]:0` for an IPv6 target) and forwards
//! every datagram it receives to a fixed target address; replies from the target go back
//! to the client that sent the first datagram. Point one QUIC connection (one KWIK path)
//! at one relay; several relays in front of the same server give several paths with
//! independent impairments.
//!
//! Each direction has its own [`Impairment`] (blackhole, seeded random loss, token-bucket
//! rate limit with a bounded drop-tail queue, delay and jitter; see
//! [`crate::impairment`]). A cloneable [`RelayHandle`] changes them while traffic flows
//! and reads the [`RelayStats`]. Dropping the [`Relay`] stops it; handles outlive it
//! harmlessly.
//!
//! Each client source address gets its own upstream socket (like a NAT mapping), so the
//! target sees one distinct address per relayed client. The number of clients is bounded
//! ([`RelayConfig::set_max_clients`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use kwik_testbed::relay::{Direction, Relay, RelayConfig};
//! use tokio::net::UdpSocket;
//!
//! let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
//! let relay = Relay::start(server.local_addr().unwrap(), RelayConfig::default())
//!     .await
//!     .unwrap();
//! let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
//! client.send_to(b"ping", relay.local_addr()).await.unwrap();
//! let mut buf = [0u8; 16];
//! let (n, _) = server.recv_from(&mut buf).await.unwrap();
//! assert_eq!(&buf[..n], b"ping");
//!
//! // Cut the path while the test runs.
//! relay.handle().set_blackhole(true);
//! assert!(relay.handle().impairment(Direction::ClientToServer).blackhole());
//! # }
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::impairment::{DropReason, Impairment, Link, Verdict};

/// Largest UDP payload the relay can carry.
const MAX_DATAGRAM: usize = 65_535;

/// One direction of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client (the side that sends to [`Relay::local_addr`]) to the target.
    ClientToServer,
    /// From the target back to the client.
    ServerToClient,
}

impl Direction {
    /// Both directions, client-to-server first.
    pub const BOTH: [Direction; 2] = [Direction::ClientToServer, Direction::ServerToClient];

    fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// How a [`Relay`] starts: impairments per direction, loss seed and limits.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    seed: u64,
    impairments: [Impairment; 2],
    max_clients: usize,
    max_in_flight: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            seed: 0x6b77_696b,
            impairments: [Impairment::none(), Impairment::none()],
            max_clients: 64,
            max_in_flight: 16_384,
        }
    }
}

impl RelayConfig {
    /// Seed of the random loss and jitter generators (default fixed). Each direction
    /// derives its own generator from it.
    pub fn set_seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self
    }

    /// Initial impairment of one direction (default none).
    pub fn set_impairment(&mut self, direction: Direction, impairment: Impairment) -> &mut Self {
        self.impairments[direction.index()] = impairment;
        self
    }

    /// Initial impairment of both directions (default none).
    pub fn set_impairment_both(&mut self, impairment: Impairment) -> &mut Self {
        self.impairments = [impairment.clone(), impairment];
        self
    }

    /// Most distinct client addresses served at once (default 64); datagrams from further
    /// clients are dropped and counted in [`RelayStats::rejected_clients`].
    pub fn set_max_clients(&mut self, max: usize) -> &mut Self {
        self.max_clients = max;
        self
    }

    /// Most datagrams accepted but not yet delivered, per direction (default 16 384).
    /// Bounds memory when a large delay meets a high rate; overflow counts as
    /// [`DropReason::Queue`].
    pub fn set_max_in_flight(&mut self, max: usize) -> &mut Self {
        self.max_in_flight = max.max(1);
        self
    }
}

/// Counters of one direction of a relay, as a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams received by the relay in this direction.
    pub received_packets: u64,
    /// Datagrams sent on to their destination.
    pub forwarded_packets: u64,
    /// Payload bytes sent on to their destination.
    pub forwarded_bytes: u64,
    /// Datagrams dropped because the direction was blackholed.
    pub dropped_blackhole: u64,
    /// Datagrams dropped by random loss.
    pub dropped_loss: u64,
    /// Datagrams dropped because the rate limiter's queue (or the in-flight bound) was full.
    pub dropped_queue: u64,
    /// Datagrams the operating system refused to send.
    pub send_errors: u64,
}

impl LinkStats {
    /// All drops, whatever the reason (send errors excluded).
    pub fn dropped_total(&self) -> u64 {
        self.dropped_blackhole + self.dropped_loss + self.dropped_queue
    }
}

/// A snapshot of a relay's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Client to target.
    pub client_to_server: LinkStats,
    /// Target to client.
    pub server_to_client: LinkStats,
    /// Distinct client addresses seen so far.
    pub clients: usize,
    /// Datagrams dropped because [`RelayConfig::set_max_clients`] was reached.
    pub rejected_clients: u64,
}

impl RelayStats {
    /// The counters of one direction.
    pub fn direction(&self, direction: Direction) -> &LinkStats {
        match direction {
            Direction::ClientToServer => &self.client_to_server,
            Direction::ServerToClient => &self.server_to_client,
        }
    }

    /// Datagrams sent on in both directions together.
    pub fn forwarded_packets(&self) -> u64 {
        self.client_to_server.forwarded_packets + self.server_to_client.forwarded_packets
    }
}

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayStartError {
    /// Binding the listening socket failed.
    #[error("cannot bind the relay socket: {0}")]
    Bind(#[source] io::Error),
}

/// A running impairment relay; stops when dropped.
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    target: SocketAddr,
    handle: RelayHandle,
    tasks: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Binds the listening socket on the loopback address of the target's family, port 0,
    /// and starts forwarding to `target`. Must be called inside a tokio runtime (with the
    /// time and I/O drivers enabled).
    pub async fn start(target: SocketAddr, config: RelayConfig) -> Result<Self, RelayStartError> {
        let bind = loopback_any_port(target);
        let socket = Arc::new(UdpSocket::bind(bind).await.map_err(RelayStartError::Bind)?);
        let local_addr = socket.local_addr().map_err(RelayStartError::Bind)?;
        let now = Instant::now().into_std();
        let links = [0u64, 1].map(|i| {
            Mutex::new(Link::new(
                config.impairments[i as usize].clone(),
                config.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1)),
                now,
            ))
        });
        let shared = Arc::new(Shared {
            links,
            counters: Default::default(),
            clients: AtomicUsize::new(0),
            rejected_clients: AtomicU64::new(0),
            rebinds: AtomicU64::new(0),
        });
        let (up_tx, up_rx) = mpsc::channel(config.max_in_flight);
        let (down_tx, down_rx) = mpsc::channel(config.max_in_flight);
        let handle = RelayHandle {
            shared: shared.clone(),
        };
        let tasks = vec![
            tokio::spawn(deliver(up_rx, shared.clone(), Direction::ClientToServer)),
            tokio::spawn(deliver(down_rx, shared.clone(), Direction::ServerToClient)),
            tokio::spawn(
                ClientSide {
                    socket,
                    target,
                    shared,
                    up_tx,
                    down_tx,
                    max_clients: config.max_clients,
                }
                .run(),
            ),
        ];
        tracing::debug!(%local_addr, %target, "relay started");
        Ok(Self {
            local_addr,
            target,
            handle,
            tasks,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address datagrams are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// A cheap, cloneable handle to change impairments and read counters.
    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Aborting the client-side task drops its JoinSet, which aborts the per-client
        // server-side tasks too; the delivery tasks end here as well.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Changes a relay's impairments at run time and reads its counters. Cloning is cheap
/// (one `Arc`); a handle outliving its relay keeps working but nothing flows any more.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    shared: Arc<Shared>,
}

impl RelayHandle {
    /// The impairment currently applied to one direction.
    pub fn impairment(&self, direction: Direction) -> Impairment {
        self.shared.link(direction).impairment().clone()
    }

    /// Replaces the impairment of one direction; applies to datagrams arriving from now on.
    pub fn set_impairment(&self, direction: Direction, impairment: Impairment) {
        self.shared.link(direction).set_impairment(impairment);
    }

    /// Edits the impairment of one direction in place, e.g.
    /// `handle.update(Direction::ServerToClient, |i| { i.set_delay(ms(5)); })`.
    pub fn update(&self, direction: Direction, edit: impl FnOnce(&mut Impairment)) {
        let mut link = self.shared.link(direction);
        let mut impairment = link.impairment().clone();
        edit(&mut impairment);
        link.set_impairment(impairment);
    }

    /// Edits both directions with the same function.
    pub fn update_both(&self, edit: impl Fn(&mut Impairment)) {
        for direction in Direction::BOTH {
            self.update(direction, &edit);
        }
    }

    /// Blackholes (or restores) both directions at once, leaving the other settings.
    ///
    /// `set_blackhole(true)` and never restoring is how a test or demo kills a path for
    /// real: every datagram arriving from then on is dropped silently, both ways, as on
    /// a dead uplink; datagrams already accepted are still delivered.
    pub fn set_blackhole(&self, on: bool) {
        self.update_both(|i| {
            i.set_blackhole(on);
        });
    }

    /// Simulates a NAT rebinding: every client mapping is dropped, so the next
    /// datagram of each client leaves through a fresh upstream socket and the
    /// target sees that client at a new address (replies to the old one are
    /// no longer forwarded).
    pub fn rebind(&self) {
        self.shared.rebinds.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times [`Self::rebind`] was called.
    pub fn rebinds(&self) -> u64 {
        self.shared.rebinds.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            client_to_server: self.shared.counters[0].snapshot(),
            server_to_client: self.shared.counters[1].snapshot(),
            clients: self.shared.clients.load(Ordering::Relaxed),
            rejected_clients: self.shared.rejected_clients.load(Ordering::Relaxed),
        }
    }
}

/// State shared by the relay's tasks and its handles.
#[derive(Debug)]
struct Shared {
    links: [Mutex<Link>; 2],
    counters: [Counters; 2],
    clients: AtomicUsize,
    rejected_clients: AtomicU64,
    /// Bumped by [`RelayHandle::rebind`]: the client side drops its mappings.
    rebinds: AtomicU64,
}

impl Shared {
    fn link(&self, direction: Direction) -> MutexGuard<'_, Link> {
        // A panic while holding this lock cannot leave a Link half-updated in a way that
        // matters to a test fixture; keep going with its state.
        self.links[direction.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a datagram through the impairment of `direction` and queues it for delivery.
    fn submit(&self, direction: Direction, packet: Packet, tx: &mpsc::Sender<Packet>) {
        let counters = &self.counters[direction.index()];
        counters.received_packets.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let verdict = self
            .link(direction)
            .offer(now.into_std(), packet.data.len());
        match verdict {
            Verdict::Deliver(at) => {
                let packet = Packet {
                    at: Instant::from_std(at),
                    ..packet
                };
                if tx.try_send(packet).is_err() {
                    counters.count_drop(DropReason::Queue);
                }
            }
            Verdict::Drop(reason) => counters.count_drop(reason),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    received_packets: AtomicU64,
    forwarded_packets: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped_blackhole: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_queue: AtomicU64,
    send_errors: AtomicU64,
}

impl Counters {
    fn count_drop(&self, reason: DropReason) {
        let counter = match reason {
            DropReason::Blackhole => &self.dropped_blackhole,
            DropReason::Loss => &self.dropped_loss,
            DropReason::Queue => &self.dropped_queue,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LinkStats {
        LinkStats {
            received_packets: self.received_packets.load(Ordering::Relaxed),
            forwarded_packets: self.forwarded_packets.load(Ordering::Relaxed),
            forwarded_bytes: self.forwarded_bytes.load(Ordering::Relaxed),
            dropped_blackhole: self.dropped_blackhole.load(Ordering::Relaxed),
            dropped_loss: self.dropped_loss.load(Ordering::Relaxed),
            dropped_queue: self.dropped_queue.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
        }
    }
}

/// A datagram accepted by a link, waiting for its delivery time.
#[derive(Debug)]
struct Packet {
    at: Instant,
    via: Arc<UdpSocket>,
    to: SocketAddr,
    data: Vec<u8>,
}

/// Sends accepted datagrams of one direction when they are due. Delivery times within a
/// direction never decrease, so a FIFO suffices.
async fn deliver(mut rx: mpsc::Receiver<Packet>, shared: Arc<Shared>, direction: Direction) {
    let counters = &shared.counters[direction.index()];
    while let Some(packet) = rx.recv().await {
        if packet.at > Instant::now() {
            tokio::time::sleep_until(packet.at).await;
        }
        match packet.via.send_to(&packet.data, packet.to).await {
            Ok(_) => {
                counters.forwarded_packets.fetch_add(1, Ordering::Relaxed);
                counters
                    .forwarded_bytes
                    .fetch_add(packet.data.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(%error, to = %packet.to, "relay send failed");
            }
        }
    }
}

/// The listening side: receives from clients, maps each client to an upstream socket.
struct ClientSide {
    socket: Arc<UdpSocket>,
    target: SocketAddr,
    shared: Arc<Shared>,
    up_tx: mpsc::Sender<Packet>,
    down_tx: mpsc::Sender<Packet>,
    max_clients: usize,
}

impl ClientSide {
    async fn run(self) {
        let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        // Owned here so that aborting this task aborts the server-side tasks as well.
        let mut server_sides = JoinSet::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut rebinds = 0;
        loop {
            let (len, from) = match self.socket.recv_from(&mut buf).await {
                Ok(received) => received,
                Err(error) => {
                    // Unconnected UDP sockets report transient errors only; keep serving.
                    tracing::debug!(%error, "relay receive failed");
                    tokio::task::yield_now().await;
                    continue;
                }
            };
            let now_rebinds = self.shared.rebinds.load(Ordering::Relaxed);
            if now_rebinds != rebinds {
                rebinds = now_rebinds;
                upstreams.clear();
                server_sides.abort_all();
            }
            let upstream = match upstreams.get(&from) {
                Some(upstream) => upstream.clone(),
                None => {
                    if upstreams.len() >= self.max_clients {
                        self.shared.rejected_clients.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let upstream = match UdpSocket::bind(loopback_any_port(self.target)).await {
                        Ok(socket) => Arc::new(socket),
                        Err(error) => {
                            tracing::warn!(%error, "relay cannot bind an upstream socket");
                            self.shared.rejected_clients.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    upstreams.insert(from, upstream.clone());
                    self.shared
                        .clients
                        .store(upstreams.len(), Ordering::Relaxed);
                    server_sides.spawn(server_side(
                        upstream.clone(),
                        self.socket.clone(),
                        from,
                        self.target,
                        self.shared.clone(),
                        self.down_tx.clone(),
                    ));
                    upstream
                }
            };
            let packet = Packet {
                at: Instant::now(),
                via: upstream,
                to: self.target,
                data: buf[..len].to_vec(),
            };
            self.shared
                .submit(Direction::ClientToServer, packet, &self.up_tx);
        }
    }
}

/// Receives the target's replies for one client and sends them back through the
/// listening socket.
async fn server_side(
    upstream: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    down_tx: mpsc::Sender<Packet>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = match upstream.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "relay upstream receive failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        if from != target {
            // Only the target may answer through this mapping.
            continue;
        }
        let packet = Packet {
            at: Instant::now(),
            via: listener.clone(),
            to: client,
            data: buf[..len].to_vec(),
        };
        shared.submit(Direction::ServerToClient, packet, &down_tx);
    }
}

fn loopback_any_port(target: SocketAddr) -> SocketAddr {
    let ip = match target.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(ip, 0)
}
