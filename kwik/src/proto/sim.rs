//! Deterministic simulated network for the session core (tests only): two
//! [`SessionState`]s joined by paths with latency, seeded jitter (which reorders
//! data segments between and within paths) and blackholes, on a virtual clock.
//! Control frames of one path stay in order, as on a QUIC stream.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kwik_presentation::{Dir, Presentation, PresentationConfig, Side, StreamId};

use crate::proto::config::SessionConfig;
use crate::proto::ids::{PathId, SessionId};
use crate::proto::scheduler::Scheduler;
use crate::proto::session::SessionState;
use crate::proto::session::events::Event;
use crate::proto::wire::frame::{Frame, PathStatus};
use crate::proto::wire::segment::Piece;

#[derive(Debug)]
enum Msg {
    Control(Frame),
    Data(Piece),
}

#[derive(Debug)]
struct SimPath {
    latency: Duration,
    jitter: Duration,
    blackhole: bool,
    closed: bool,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Sim {
    start: Instant,
    now: Instant,
    sides: [SessionState; 2],
    paths: BTreeMap<PathId, SimPath>,
    /// (deliver at, sequence) -> (to side, path, message)
    queue: BTreeMap<(Instant, u64), (usize, PathId, Msg)>,
    seq: u64,
    rng: Rng,
    /// Per direction and path: the last delivery time of a control frame (FIFO).
    control_tail: BTreeMap<(usize, PathId), Instant>,
    received: Vec<u8>,
    finished: bool,
    abandoned: Vec<PathId>,
}

impl Sim {
    fn new(config: SessionConfig, seed: u64) -> Self {
        let now = Instant::now();
        let pcfg = PresentationConfig::default()
            .session_window(1 << 20)
            .stream_window(512 << 10);
        let pres = [
            Presentation::new(pcfg.clone(), now),
            Presentation::new(pcfg.clone(), now),
        ];
        let id = SessionId::from_bytes([9; 16]);
        let credit = pres[0].session_credit();
        let stream_credit = pcfg.get_stream_window();
        let [client_pres, server_pres] = pres;
        let client = SessionState::new(
            id,
            Side::Client,
            config.clone(),
            client_pres,
            credit,
            stream_credit,
            now,
        );
        let server = SessionState::new(
            id,
            Side::Server,
            config,
            server_pres,
            credit,
            stream_credit,
            now,
        );
        let mut paths = BTreeMap::new();
        paths.insert(
            PathId::INITIAL,
            SimPath {
                latency: Duration::from_millis(10),
                jitter: Duration::from_millis(4),
                blackhole: false,
                closed: false,
            },
        );
        Self {
            start: now,
            now,
            sides: [client, server],
            paths,
            queue: BTreeMap::new(),
            seq: 0,
            rng: Rng(seed | 1),
            control_tail: BTreeMap::new(),
            received: Vec::new(),
            finished: false,
            abandoned: Vec::new(),
        }
    }

    fn add_path(&mut self, latency_ms: u64) -> PathId {
        let id = self.sides[0].allocate_path_id();
        for s in &mut self.sides {
            s.add_path(id, PathStatus::Available, self.now);
        }
        self.paths.insert(
            id,
            SimPath {
                latency: Duration::from_millis(latency_ms),
                jitter: Duration::from_millis(latency_ms / 3),
                blackhole: false,
                closed: false,
            },
        );
        id
    }

    fn send(&mut self, from: usize, path: PathId, msg: Msg) {
        let Some(p) = self.paths.get(&path) else {
            return;
        };
        if p.blackhole || p.closed {
            return;
        }
        let mut at = self.now + p.latency;
        match &msg {
            Msg::Data(_) => {
                let j = p.jitter.as_micros() as u64;
                if j > 0 {
                    at += Duration::from_micros(self.rng.next() % j);
                }
            }
            Msg::Control(_) => {
                let tail = self.control_tail.entry((from, path)).or_insert(at);
                at = at.max(*tail);
                *tail = at;
            }
        }
        self.seq += 1;
        self.queue.insert((at, self.seq), (1 - from, path, msg));
    }

    fn pump_outgoing(&mut self) {
        let ids: Vec<PathId> = self.paths.keys().copied().collect();
        for side in 0..2 {
            for &path in &ids {
                while let Some(f) = self.sides[side].poll_control(path) {
                    self.send(side, path, Msg::Control(f));
                }
                // A path carries at most a bounded amount per tick (its "bandwidth").
                for _ in 0..4 {
                    let Some(tx) = self.sides[side].poll_data(path) else {
                        break;
                    };
                    let piece = Piece {
                        stream: tx.stream,
                        offset: tx.offset,
                        data: tx.data,
                        fin: tx.fin,
                    };
                    self.send(side, path, Msg::Data(piece));
                }
            }
        }
    }

    fn handle_events(&mut self) {
        for side in 0..2 {
            while let Some(e) = self.sides[side].poll_event() {
                if let Event::ClosePath(p) = e {
                    // The driver closes the QUIC connection: the other side learns it.
                    if let Some(sp) = self.paths.get_mut(&p) {
                        sp.closed = true;
                    }
                    self.abandoned.push(p);
                    let now = self.now;
                    self.sides[1 - side].path_failed(p, now);
                }
            }
        }
    }

    fn deliver_due(&mut self) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (to, path, msg) = entry.remove();
            if self.paths.get(&path).is_none_or(|p| p.closed) {
                continue;
            }
            let now = self.now;
            match msg {
                Msg::Control(f) => self.sides[to].handle_frame(path, f, now).expect("frame"),
                Msg::Data(p) => self.sides[to].handle_piece(path, p, now).expect("piece"),
            }
        }
    }

    fn read_app(&mut self, stream: StreamId) {
        loop {
            match self.sides[1].read_chunk(stream, usize::MAX) {
                Ok(Some(b)) => self.received.extend_from_slice(&b),
                Ok(None) => {
                    if !self.finished {
                        self.finished = true;
                        self.sides[1].release_recv(stream, None);
                    }
                    break;
                }
                Err(_) => break,
            }
        }
    }

    fn tick(&mut self, stream: StreamId) {
        self.pump_outgoing();
        self.handle_events();
        self.deliver_due();
        self.read_app(stream);
        for side in 0..2 {
            self.sides[side].handle_timeout(self.now);
        }
        self.handle_events();
        self.now += Duration::from_millis(1);
    }
}

/// Sends `total` bytes from the client on one uni stream scheduled with `policy`
/// over two paths; `kill` blackholes path 0 or 1 at the given virtual time.
/// Returns the sim after the stream completed.
fn transfer(policy: Scheduler, total: usize, kill: Option<(PathId, Duration)>, seed: u64) -> Sim {
    let config = SessionConfig::default()
        .ping_interval(Duration::from_millis(30))
        .missed_pong_threshold(3)
        .max_segment(4096)
        .path_window(64 << 10);
    let mut sim = Sim::new(config, seed);
    let second = sim.add_path(25);
    assert_eq!(second, PathId::new(1));
    let stream = sim.sides[0].open(Dir::Uni, Some(policy)).expect("open");
    let data: Vec<u8> = (0..total).map(|i| (i * 31 % 251) as u8).collect();
    let mut rest = Bytes::from(data.clone());
    let start = sim.now;
    let mut finished_write = false;
    for _ in 0..200_000 {
        if !rest.is_empty() {
            rest = sim.sides[0].write_bytes(stream, rest).expect("write");
        } else if !finished_write {
            sim.sides[0].finish(stream).expect("finish");
            finished_write = true;
        }
        if let Some((p, at)) = kill {
            if sim.now >= start + at {
                if let Some(sp) = sim.paths.get_mut(&p) {
                    sp.blackhole = true;
                }
            }
        }
        sim.tick(stream);
        if sim.finished && sim.sides[0].retained(stream).is_none() {
            break;
        }
    }
    assert!(sim.finished, "stream did not complete");
    assert_eq!(sim.received.len(), data.len());
    assert!(sim.received == data, "bytes differ");
    sim
}

const POLICIES: [Scheduler; 5] = [
    Scheduler::MinRtt,
    Scheduler::Aggregate,
    Scheduler::Redundant,
    Scheduler::Backup,
    Scheduler::Pinned(PathId::new(1)),
];

#[test]
fn every_scheduler_delivers_byte_exact_with_reordering() {
    for (i, policy) in POLICIES.into_iter().enumerate() {
        let sim = transfer(policy, 3 << 20, None, 7 + i as u64);
        let stats = sim.sides[0].path_stats();
        let sent: Vec<u64> = stats.iter().map(|p| p.bytes_sent).collect();
        match policy {
            // A lagging path skips chunks already acknowledged via the other.
            Scheduler::Redundant => assert!(
                sent.iter().all(|s| *s > 3 << 19) && sent.iter().any(|s| *s >= 3 << 20),
                "{sent:?}"
            ),
            Scheduler::Aggregate => assert!(sent.iter().all(|s| *s > 0), "{sent:?}"),
            Scheduler::Backup => assert_eq!(sent[1], 0, "{sent:?}"),
            Scheduler::Pinned(_) => assert_eq!(sent[0], 0, "{sent:?}"),
            _ => {}
        }
        assert_eq!(sim.sides[0].stats().bytes_retained, 0);
    }
}

#[test]
fn every_scheduler_survives_path_death() {
    for (i, policy) in POLICIES.into_iter().enumerate() {
        for victim in [PathId::new(0), PathId::new(1)] {
            let sim = transfer(
                policy,
                2 << 20,
                Some((victim, Duration::from_millis(150))),
                100 + i as u64,
            );
            assert!(
                sim.abandoned.contains(&victim),
                "{policy:?}: path {victim} not abandoned"
            );
            let survivors: Vec<_> = sim.sides[0]
                .path_stats()
                .into_iter()
                .filter(|p| p.state != crate::PathState::Abandoned)
                .collect();
            assert_eq!(survivors.len(), 1, "{policy:?}");
        }
    }
}

#[test]
fn same_seed_same_run() {
    let a = transfer(
        Scheduler::Aggregate,
        1 << 20,
        Some((PathId::new(0), Duration::from_millis(60))),
        42,
    );
    let b = transfer(
        Scheduler::Aggregate,
        1 << 20,
        Some((PathId::new(0), Duration::from_millis(60))),
        42,
    );
    assert_eq!(a.now - a.start, b.now - b.start);
    assert_eq!(a.sides[0].stats(), b.sides[0].stats());
}

#[test]
fn credit_bounds_retention() {
    // The receiver never reads: the sender's retained bytes stop at the credit.
    let mut sim = Sim::new(SessionConfig::default(), 1);
    let stream = sim.sides[0].open(Dir::Uni, None).expect("open");
    let mut rest = Bytes::from(vec![1u8; 4 << 20]);
    for _ in 0..2000 {
        rest = sim.sides[0].write_bytes(stream, rest).expect("write");
        sim.pump_outgoing();
        sim.handle_events();
        sim.deliver_due();
        for side in 0..2 {
            sim.sides[side].handle_timeout(sim.now);
        }
        sim.now += Duration::from_millis(1);
    }
    let credit = 512u64 << 10;
    assert_eq!(rest.len() as u64, (4u64 << 20) - credit);
    assert!(sim.sides[0].retained(stream).unwrap() <= credit);
    assert_eq!(sim.sides[1].presentation().stats().bytes_received, credit);
}

#[test]
fn forged_frames_are_typed_errors() {
    let mut sim = Sim::new(SessionConfig::default(), 1);
    let now = sim.now;
    // Data beyond the stream credit.
    let bad = Piece {
        stream: StreamId::from_parts(0, Side::Client, Dir::Uni),
        offset: 10 << 20,
        data: Bytes::from_static(b"x"),
        fin: false,
    };
    assert!(matches!(
        sim.sides[1].handle_piece(PathId::INITIAL, bad, now),
        Err(crate::ProtocolError::Data(_))
    ));
    // Data on a stream the receiver itself opened as uni.
    let own = Piece {
        stream: StreamId::from_parts(0, Side::Server, Dir::Uni),
        offset: 0,
        data: Bytes::from_static(b"x"),
        fin: false,
    };
    assert!(
        sim.sides[1]
            .handle_piece(PathId::INITIAL, own, now)
            .is_err()
    );
    // Handshake frames after the handshake.
    assert!(
        sim.sides[1]
            .handle_frame(
                PathId::INITIAL,
                Frame::Open {
                    version: 1,
                    max_data: 0,
                    stream_credit: 0
                },
                now
            )
            .is_err()
    );
    // A client must not be asked for tokens.
    assert!(
        sim.sides[0]
            .handle_frame(
                PathId::INITIAL,
                Frame::TokenRequest {
                    path: PathId::new(3)
                },
                now
            )
            .is_err()
    );
}

/// Virtual time from blackholing path 1 (idle session, two paths) until the
/// client abandons it.
fn time_to_abandon(threshold: u32) -> Duration {
    let config = SessionConfig::default()
        .ping_interval(Duration::from_millis(50))
        .missed_pong_threshold(threshold);
    let mut sim = Sim::new(config, 3);
    let path = sim.add_path(10);
    let stream = StreamId::from_parts(0, Side::Client, Dir::Uni);
    for _ in 0..500 {
        sim.tick(stream);
    }
    sim.paths.get_mut(&path).unwrap().blackhole = true;
    let cut = sim.now;
    for _ in 0..20_000 {
        sim.tick(stream);
        if sim.abandoned.contains(&path) {
            return sim.now - cut;
        }
    }
    panic!("path never abandoned");
}

#[test]
fn missed_pong_threshold_is_honoured() {
    let fast = time_to_abandon(2);
    let slow = time_to_abandon(6);
    // Each miss costs one ping interval (50 ms, RTT 20 ms).
    assert!(fast >= Duration::from_millis(100), "{fast:?}");
    assert!(slow >= Duration::from_millis(300), "{slow:?}");
    assert!(
        slow > fast + Duration::from_millis(150),
        "{fast:?} {slow:?}"
    );
}

#[test]
fn last_healthy_path_is_not_abandoned_for_missed_pongs() {
    let config = SessionConfig::default()
        .ping_interval(Duration::from_millis(20))
        .missed_pong_threshold(2);
    let mut sim = Sim::new(config, 4);
    let stream = StreamId::from_parts(0, Side::Client, Dir::Uni);
    for _ in 0..100 {
        sim.tick(stream);
    }
    sim.paths.get_mut(&PathId::INITIAL).unwrap().blackhole = true;
    for _ in 0..2000 {
        sim.tick(stream);
    }
    assert!(sim.abandoned.is_empty());
    let stats = sim.sides[0].path_stats();
    assert_eq!(stats[0].state, crate::PathState::Degraded);
    assert!(stats[0].missed_pongs >= 2);
    assert!(sim.sides[0].close_reason().is_none());
}
