//! A KWIK server for two-terminal demos: it accepts sessions, and for every
//! unidirectional stream a client opens it prints how many bytes arrived and a
//! simple checksum of them; bidirectional streams are echoed back.
//!
//! ```text
//! cargo run -p kwik --example server -- 127.0.0.1:4433 /tmp/kwik-cert.der
//! ```
//!
//! It writes a freshly generated self-signed certificate (DER) to the given path;
//! the client trusts exactly that certificate.

use std::net::SocketAddr;

use kwik::{Endpoint, ServerConfig, Session, SessionConfig};

mod shared;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:4433".into())
        .parse()?;
    let cert_path = args.next().unwrap_or_else(|| "/tmp/kwik-cert.der".into());

    let (cert, key) = shared::self_signed_localhost()?;
    std::fs::write(&cert_path, &cert)?;
    let config = ServerConfig::with_single_cert(vec![cert], key)?.session(SessionConfig::lan());
    let endpoint = Endpoint::server(addr, config)?;
    println!("listening on {addr}; certificate written to {cert_path}");

    while let Some(session) = endpoint.accept().await {
        println!("session {} opened", session.id());
        tokio::spawn(serve(session));
    }
    Ok(())
}

async fn serve(session: Session) {
    let events = {
        let mut events = session.path_events();
        let id = session.id();
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                println!("session {id}: {e:?}");
            }
        })
    };
    let echo = {
        let session = session.clone();
        tokio::spawn(async move {
            while let Ok((mut send, mut recv)) = session.accept_bi().await {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut recv, &mut send).await;
                    let _ = send.finish();
                    let _ = send.finished().await;
                });
            }
        })
    };
    while let Ok(mut stream) = session.accept_uni().await {
        let id = session.id();
        tokio::spawn(async move {
            let mut bytes = 0u64;
            let mut sum = 0u64;
            loop {
                match stream.read_chunk(1 << 20).await {
                    Ok(Some(chunk)) => {
                        bytes += chunk.len() as u64;
                        sum = chunk
                            .iter()
                            .fold(sum, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        println!("session {id}: stream {:?} failed: {e}", stream.id());
                        return;
                    }
                }
            }
            println!(
                "session {id}: stream {:?} done, {bytes} bytes, checksum {sum:016x}",
                stream.id()
            );
        });
    }
    let reason = session.closed().await;
    println!("session {} closed: {reason}", session.id());
    for p in session.paths() {
        println!("  {:?}", p.stats);
    }
    echo.abort();
    events.abort();
}
