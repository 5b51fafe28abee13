//! The secondary server of the three-terminal multi-server demo (see the
//! `primary` example for the commands): it accepts the paths clients join at
//! the primary's request and writes every chunk the primary delegates to it,
//! from its own copy of the file, straight into the client's stream.
//!
//! Arguments: listen address, folder of shared material (created by the
//! primary), the file, and optionally `--leave-after N`: drop every client
//! after serving N grants, to watch the primary reclaim the rest.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use kwik::{Endpoint, SecondaryJoins, SecondarySession, ServerConfig, SessionConfig};

mod shared;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: secondary LISTEN DIR FILE [--leave-after N]";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let dir = args.next().ok_or(usage)?;
    let file = Bytes::from(std::fs::read(args.next().ok_or(usage)?)?);
    let leave_after = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--leave-after"), Some(n)) => Some(n.parse::<u64>()?),
        _ => return Err(usage.into()),
    };

    let material = shared::Material::load_or_create(Path::new(&dir))?;
    let config = ServerConfig::with_single_cert(vec![material.cert], material.key)?
        .session(SessionConfig::lan())
        .token_key(material.token_key)
        .secondary_joins(SecondaryJoins::Accept);
    let endpoint = Endpoint::server(listen, config)?;
    println!("secondary on {listen}: {} bytes ready to serve", file.len());

    while let Some(path) = endpoint.accept_secondary().await {
        let file = file.clone();
        tokio::spawn(async move {
            println!("session {}: joined as {}", path.id(), path.path());
            let served = serve(&path, &file, leave_after).await;
            println!("session {}: {served}", path.id());
        });
    }
    Ok(())
}

/// Writes every grant's range until the path closes (or `leave_after` grants).
async fn serve(path: &SecondarySession, file: &Bytes, leave_after: Option<u64>) -> String {
    let (mut grants, mut bytes) = (0u64, 0u64);
    while let Some(grant) = path.accept_grant().await {
        if leave_after == Some(grants) {
            path.close(1, b"leaving early");
            return format!("left after {grants} grants ({bytes} bytes), as asked");
        }
        let range = grant.range.clone();
        let Some(part) = file.get(range.start as usize..range.end as usize) else {
            path.close(2, b"grant beyond my copy of the file");
            return format!("grant {range:?} is beyond the file; closed the path");
        };
        if let Err(e) = path
            .write_at(grant.stream, range.start, file.slice_ref(part))
            .await
        {
            return format!("writing {range:?} failed: {e}");
        }
        grants += 1;
        bytes += range.end - range.start;
    }
    format!("path closed after {grants} grants ({bytes} bytes)")
}
