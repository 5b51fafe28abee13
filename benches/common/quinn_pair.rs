//! The raw-quinn peer: a server and a client endpoint trusting one test CA, and one
//! bulk transfer between them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kwik_testbed::impairment::Impairment;
use kwik_testbed::relay::Relay;
use kwik_testbed::tls::{SERVER_NAME, TestPki};

use super::payload::{MIB, Sink, Transfer, pattern};
use super::relays::{print_relays, start_relays};

/// The ALPN of the raw-quinn peer.
pub(crate) const ALPN: &[&[u8]] = &[b"kwik-bench/1"];

/// A quinn server and client endpoint on 127.0.0.1.
#[derive(Debug)]
pub(crate) struct QuinnPair {
    /// The server endpoint.
    pub(crate) server: quinn::Endpoint,
    /// The client endpoint, its default client configuration trusting the server.
    pub(crate) client: quinn::Endpoint,
}

/// quinn's flow-control windows: its defaults, or the larger ones kwik configures on its
/// paths (16 MiB per stream, 64 MiB per connection), to separate the cost of kwik's
/// layer from the effect of its window sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Windows {
    /// quinn's defaults.
    Default,
    /// The windows kwik sets on its paths.
    LikeKwik,
}

impl QuinnPair {
    /// A fresh CA and both endpoints, with quinn's default transport settings.
    pub(crate) fn new() -> Result<Self> {
        Self::with_windows(Windows::Default)
    }

    /// A fresh CA and both endpoints, with `windows`.
    pub(crate) fn with_windows(windows: Windows) -> Result<Self> {
        let pki = TestPki::generate()?;
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        let mut server_config = pki.quinn_server_config(ALPN)?;
        let mut client_config = pki.quinn_client_config(ALPN)?;
        if windows == Windows::LikeKwik {
            let mut transport = quinn::TransportConfig::default();
            transport
                .stream_receive_window(quinn::VarInt::from_u32(16 << 20))
                .receive_window(quinn::VarInt::from_u32(64 << 20))
                .send_window(64 << 20);
            let transport = Arc::new(transport);
            server_config.transport_config(transport.clone());
            client_config.transport_config(transport);
        }
        let server = quinn::Endpoint::server(server_config, any)?;
        let mut client = quinn::Endpoint::client(any)?;
        client.set_default_client_config(client_config);
        Ok(Self { server, client })
    }
}

/// Sends `size` bytes on one quinn uni stream on plain loopback; returns the seconds from
/// opening the stream to the receiver reading the last byte (handshake excluded).
pub(crate) async fn quinn_bulk(size: u64, windows: Windows) -> Result<f64> {
    Ok(quinn_transfer_with(size, &[], windows).await?.secs)
}

/// Sends `size` bytes on one quinn uni stream, through the first of `relays` if any,
/// with quinn's default windows.
pub(crate) async fn quinn_transfer(size: u64, relays: &[Impairment]) -> Result<Transfer> {
    quinn_transfer_with(size, relays, Windows::Default).await
}

async fn quinn_transfer_with(
    size: u64,
    relays: &[Impairment],
    windows: Windows,
) -> Result<Transfer> {
    let pair = QuinnPair::with_windows(windows)?;
    let server_addr = pair.server.local_addr()?;
    let relays = start_relays(server_addr, relays, 1).await?;
    let server = pair.server.clone();
    let receiver = tokio::spawn(async move {
        let conn = server.accept().await.context("no incoming")?.await?;
        let mut recv = conn.accept_uni().await?;
        let mut sink = Sink::new(Arc::default(), false);
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
            sink.take(&chunk.bytes);
        }
        let done = Instant::now();
        conn.close(0u32.into(), b"done");
        anyhow::Ok((sink, done))
    });
    let target = relays.first().map_or(server_addr, Relay::local_addr);
    let conn = pair.client.connect(target, SERVER_NAME)?.await?;
    let chunk = pattern();
    let start = Instant::now();
    let mut send = conn.open_uni().await?;
    let mut sent = 0u64;
    while sent < size {
        let len = (size - sent).min(MIB) as usize;
        send.write_chunk(chunk.slice(..len)).await?;
        sent += len as u64;
    }
    send.finish()?;
    let (sink, done) = receiver.await??;
    if sink.lost(size) != 0 {
        bail!("quinn receiver lost {} of {size} bytes", sink.lost(size));
    }
    conn.closed().await;
    print_relays(&relays);
    Ok(Transfer {
        secs: (done - start).as_secs_f64(),
        sink,
    })
}
