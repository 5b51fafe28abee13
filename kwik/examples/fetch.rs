//! The client of the three-terminal multi-server demo (see the `primary`
//! example for the commands): it opens a session at the primary, joins the
//! secondary when asked (the session does that by itself), saves the one
//! stream the primary sends to a file and prints its SHA-256, to compare with
//! the one the primary printed.
//!
//! Arguments: primary address, folder of shared material (only `cert.der` is
//! read), output file.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use kwik::{ClientConfig, Endpoint, SessionConfig};
use sha2::{Digest, Sha256};

mod shared;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: fetch PRIMARY DIR OUT";
    let primary: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let dir = args.next().ok_or(usage)?;
    let out_path = args.next().ok_or(usage)?;

    let config = ClientConfig::with_root_certificates([shared::certificate(Path::new(&dir))?])?
        .session(SessionConfig::lan());
    let endpoint = Endpoint::client("0.0.0.0:0".parse()?, config)?;
    let session = endpoint.connect(primary, "localhost").await?;
    println!("session {} open at {primary}", session.id());

    let started = Instant::now();
    let mut stream = session.accept_uni().await?;
    // A buffered std file: small blocking writes, fine for a demo client.
    let mut out = std::io::BufWriter::new(std::fs::File::create(&out_path)?);
    let mut hash = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = stream.read_chunk(1 << 20).await? {
        hash.update(&chunk);
        len += chunk.len() as u64;
        out.write_all(&chunk)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "saved {len} bytes to {out_path} in {secs:.2} s ({:.1} MB/s), sha256 {}",
        len as f64 / secs / 1e6,
        shared::hex(&hash.finalize())
    );
    for path in session.secondary_paths() {
        println!("  secondary path {} at {}", path.id, path.addr);
    }
    session.close(0, b"done");
    endpoint.wait_idle().await;
    Ok(())
}
