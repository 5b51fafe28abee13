//! The test CA works with real quinn on loopback: a verifying client accepts a server
//! signed by its CA and rejects one signed by a different CA.

use std::net::{Ipv4Addr, SocketAddr};

use kwik_testbed::tls::{SERVER_NAME, TestPki};

const ALPN: &[&[u8]] = &[b"kwik-testbed/1"];

fn server(pki: &TestPki) -> quinn::Endpoint {
    let config = pki.quinn_server_config(ALPN).unwrap();
    quinn::Endpoint::server(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap()
}

fn client(pki: &TestPki) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    endpoint.set_default_client_config(pki.quinn_client_config(ALPN).unwrap());
    endpoint
}

#[tokio::test]
async fn verified_handshake_and_echo() {
    let pki = TestPki::generate().unwrap();
    let server = server(&pki);
    let addr = server.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let msg = recv.read_to_end(1024).await.unwrap();
        send.write_all(&msg).await.unwrap();
        send.finish().unwrap();
        // Keep the connection alive until the client has read the echo.
        conn.closed().await;
    });

    let client = client(&pki);
    let conn = client.connect(addr, SERVER_NAME).unwrap().await.unwrap();
    let alpn = conn
        .handshake_data()
        .unwrap()
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .unwrap()
        .protocol;
    assert_eq!(alpn.as_deref(), Some(ALPN[0]));
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(1024).await.unwrap(), b"hello");
    conn.close(0u32.into(), b"done");
    accept.await.unwrap();
}

#[tokio::test]
async fn ip_address_name_is_valid_too() {
    let pki = TestPki::generate().unwrap();
    let server = server(&pki);
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        if let Some(incoming) = server.accept().await {
            let _ = incoming.await;
        }
    });
    let client = client(&pki);
    client.connect(addr, "127.0.0.1").unwrap().await.unwrap();
}

#[tokio::test]
async fn foreign_ca_is_rejected() {
    let server_pki = TestPki::generate().unwrap();
    let other_pki = TestPki::generate().unwrap();
    let server = server(&server_pki);
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        if let Some(incoming) = server.accept().await {
            let _ = incoming.await;
        }
    });
    let client = client(&other_pki);
    let result = client.connect(addr, SERVER_NAME).unwrap().await;
    assert!(
        result.is_err(),
        "a client trusting another CA must refuse the server"
    );
}
