//! (Client) Opening a path of an existing session over a [`Route`]: a join
//! token asked for on a live path, a QUIC connection, JOIN, attach. Used by
//! `Session::add_path` and by the re-creation of dead paths, which dials the
//! dead path's route again when the core says so ([`redial`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use quinn::VarInt;
use tokio::sync::oneshot;
use tracing::debug;

use crate::driver::control::{HANDSHAKE_TIMEOUT, send_join};
use crate::driver::error::{AddPathError, ConnectError};
use crate::driver::path_tasks::attach_path;
use crate::driver::shared::{ClientSide, SessionShared};
use crate::proto::error::PATH_ABANDONED;
use crate::proto::ids::PathId;
use crate::proto::wire::frame::{Frame, PathStatus};

/// The addresses of a client path: the local endpoint it was dialled from and
/// the remote address it goes to. A re-created path takes its dead
/// predecessor's route (same local socket, same remote).
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) remote: SocketAddr,
}

/// Opens a new path of `shared`'s session over `route` with `status`: asks
/// the server for a token on a live path, connects, joins, attaches the
/// path's tasks and remembers its route. Not cancel-safe.
pub(crate) async fn dial(
    shared: &Arc<SessionShared>,
    client: &ClientSide,
    route: Route,
    status: PathStatus,
    weight: Option<u32>,
) -> Result<PathId, AddPathError> {
    let (path, token_rx) = {
        let mut state = shared.state.lock();
        if let Some(r) = state.close_reason() {
            return Err(AddPathError::SessionClosed(r.clone()));
        }
        if state.live_paths() >= state.config().max_paths {
            return Err(AddPathError::TooManyPaths);
        }
        let path = state.allocate_path_id();
        let (tx, rx) = oneshot::channel();
        shared.tokens.lock().insert(path, tx);
        (path, rx)
    };
    shared.with_state(|s| s.queue_frame(Frame::TokenRequest { path }));
    let token = match tokio::time::timeout(HANDSHAKE_TIMEOUT, token_rx).await {
        Ok(Ok(t)) => t,
        _ => {
            shared.tokens.lock().remove(&path);
            return Err(AddPathError::NoToken);
        }
    };
    let connecting = route
        .endpoint
        .connect_with(
            client.quinn_config.clone(),
            route.remote,
            &client.server_name,
        )
        .map_err(ConnectError::from)?;
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| ConnectError::TimedOut)?
        .map_err(ConnectError::from)?;
    let (send, recv, reader) = send_join(&conn, shared.id, path, token).await?;
    if shared.is_closed() {
        conn.close(VarInt::from_u32(PATH_ABANDONED), b"session closed");
        return Err(AddPathError::SessionClosed(shared.close_reason()));
    }
    shared.with_state(|s| {
        s.add_path(path, PathStatus::Available, Instant::now());
        s.set_path_weight(path, weight);
    });
    let local = route.endpoint.local_addr().ok();
    client.routes.lock().insert(path, route);
    attach_path(shared, path, conn, send, recv, reader);
    if let Some(io) = shared.paths.lock().get_mut(&path) {
        io.local = local;
    }
    if status != PathStatus::Available {
        shared.with_state(|s| s.set_path_status(path, status));
    }
    Ok(path)
}

/// One attempt to bring back the dead path `old` (the core's `Dial` event):
/// dials its route with its last status and weight and reports the outcome to the core,
/// which schedules the next attempt or gives up.
pub(crate) async fn redial(shared: Arc<SessionShared>, old: PathId) {
    let Some(client) = shared.client.as_ref() else {
        return;
    };
    let route = client.routes.lock().get(&old).cloned();
    let (status, weight) = {
        let state = shared.state.lock();
        let status = state.path_status(old).unwrap_or(PathStatus::Available);
        (status, state.path_weight(old))
    };
    let outcome = match route {
        Some(route) => dial(&shared, client, route, status, weight).await,
        None => Err(AddPathError::NotAClient),
    };
    match outcome {
        Ok(new) => {
            let kept = shared.with_state(|s| s.recreated(old, new));
            if kept {
                metrics::counter!("kwik_paths_recreated_total").increment(1);
                client.routes.lock().remove(&old);
            } else {
                // Cancelled while dialling (the peer removed the old path).
                let _ = shared.with_state(|s| s.remove_path(new, Instant::now()));
            }
        }
        Err(error) => {
            debug!(session = %shared.id, path = %old, %error, "re-creating a path failed");
            shared.with_state(|s| s.recreate_failed(old, Instant::now()));
        }
    }
}
