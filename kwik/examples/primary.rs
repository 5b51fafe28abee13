//! The primary server of a three-terminal multi-server demo: it serves one file
//! to every client that connects, writing the even chunks itself and delegating
//! the odd ones to a secondary server, which writes them straight into the
//! client's stream. If the secondary goes away, the primary writes whatever it
//! left missing (reclaim), so the client still gets the whole file.
//!
//! ```text
//! head -c 67108864 /dev/urandom > /tmp/kwik-file.bin
//! # terminal 1: the primary (creates the shared material in /tmp/kwik-ms)
//! cargo run -p kwik --example primary -- 127.0.0.1:4433 /tmp/kwik-ms /tmp/kwik-file.bin 127.0.0.1:4434
//! # terminal 2: the secondary (reads the same material and the same file)
//! cargo run -p kwik --example secondary -- 127.0.0.1:4434 /tmp/kwik-ms /tmp/kwik-file.bin
//! # terminal 3: the client
//! cargo run -p kwik --example fetch -- 127.0.0.1:4433 /tmp/kwik-ms /tmp/kwik-received.bin
//! ```
//!
//! Arguments: listen address, folder of shared material, file to serve, the
//! secondary's address, then optionally the chunk size in bytes (default 1 MiB).
//!
//! The folder holds what a real deployment provisions out of band: one
//! certificate for the name `localhost` with its key (both servers present it;
//! the client trusts it) and the 32-byte key that signs join tokens and
//! delegation grants, shared by the primary and its secondaries.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use kwik::{Endpoint, PathEvent, PathId, SendStream, ServerConfig, Session, SessionConfig};
use sha2::{Digest, Sha256};

mod shared;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: primary LISTEN DIR FILE SECONDARY [CHUNK]";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let dir = args.next().ok_or(usage)?;
    let file = Bytes::from(std::fs::read(args.next().ok_or(usage)?)?);
    let secondary: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let chunk: u64 = args.next().map_or(Ok(1 << 20), |c| c.parse())?;
    if chunk == 0 {
        return Err("the chunk size must be at least one byte".into());
    }

    let material = shared::Material::load_or_create(Path::new(&dir))?;
    let config = ServerConfig::with_single_cert(vec![material.cert], material.key)?
        .session(SessionConfig::lan())
        .token_key(material.token_key);
    let endpoint = Endpoint::server(listen, config)?;
    println!(
        "primary on {listen}: serving {} bytes (sha256 {}) in {chunk}-byte chunks, odd chunks from {secondary}",
        file.len(),
        shared::hex(&Sha256::digest(&file))
    );

    while let Some(session) = endpoint.accept().await {
        let file = file.clone();
        tokio::spawn(async move {
            let id = session.id();
            match serve(&session, secondary, file, chunk).await {
                Ok(report) => println!("session {id}: {report}"),
                Err(e) => println!("session {id}: failed: {e}"),
            }
        });
    }
    Ok(())
}

/// Serves `file` on one stream of `session`; returns a one-line summary.
async fn serve(
    session: &Session,
    secondary: SocketAddr,
    file: Bytes,
    chunk: u64,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let secondary_path = match session.add_secondary(secondary, "localhost").await {
        Ok(path) => Some(path),
        Err(e) => {
            println!(
                "session {}: no secondary ({e}); serving alone",
                session.id()
            );
            None
        }
    };
    let mut events = session.path_events();
    let mut stream = session.open_uni().await?;
    let len = file.len() as u64;
    let (mut own, mut delegated, mut reclaimed) = (0u64, 0u64, 0u64);
    let mut secondary_alive = secondary_path.is_some();
    let mut next = 0u64;
    loop {
        // One step (write or delegate the next chunk, or wait until the client
        // has everything), raced against path events: a delegation or a write
        // may wait for credit that only the departed secondary's bytes would
        // have freed, so its leaving must be handled while we wait.
        let step = async {
            if next >= len {
                stream.finished().await?;
                return Ok::<_, kwik::WriteError>(None);
            }
            let range = next..(next + chunk).min(len);
            let odd = (next / chunk) % 2 == 1;
            if let (Some(path), true, true) = (secondary_path, odd, secondary_alive) {
                if session
                    .delegate(stream.id(), range.clone(), path)
                    .await
                    .is_ok()
                {
                    return Ok(Some((range, false)));
                }
            }
            let part = file.slice(range.start as usize..range.end as usize);
            stream.write_at(range.start, part).await?;
            Ok(Some((range, true)))
        };
        tokio::select! {
            biased;
            event = events.next() => match event {
                Some(PathEvent::Abandoned(path)) if Some(path) == secondary_path => {
                    println!("session {}: secondary {path} left; reclaiming", session.id());
                    secondary_alive = false;
                    reclaimed += reclaim(session, &stream, &file, path).await?;
                }
                Some(PathEvent::GrantExpired(path)) if Some(path) == secondary_path => {
                    // Alive but too slow: take its late chunks back, stop delegating.
                    println!("session {}: a grant of {path} expired; reclaiming", session.id());
                    secondary_alive = false;
                    reclaimed += reclaim(session, &stream, &file, path).await?;
                }
                Some(_) => {}
                None => return Err("session ended before the file was delivered".into()),
            },
            done = step => match done? {
                None => break,
                Some((range, written_here)) => {
                    if written_here { own += range.end - range.start; } else { delegated += range.end - range.start; }
                    next = range.end;
                    if next >= len {
                        stream.finish()?;
                    }
                }
            },
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(format!(
        "{len} bytes delivered in {secs:.2} s ({:.1} MB/s): {own} written here, {delegated} delegated, {reclaimed} of those reclaimed",
        len as f64 / secs / 1e6
    ))
}

/// Writes every range delegated to `path` that the client has not acknowledged.
async fn reclaim(
    session: &Session,
    stream: &SendStream,
    file: &Bytes,
    path: PathId,
) -> Result<u64, kwik::WriteError> {
    let mut bytes = 0;
    for (id, range) in session.missing_from(path) {
        if id != stream.id() {
            continue;
        }
        bytes += range.end - range.start;
        let part = file.slice(range.start as usize..range.end as usize);
        stream.write_at(range.start, part).await?;
    }
    Ok(bytes)
}
