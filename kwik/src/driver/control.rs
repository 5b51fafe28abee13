//! The control channel's bytes: writing and reading frames on a quinn
//! stream, the client's JOIN exchange, the timeouts and close code of path
//! handshakes, and the wall clock the core is given.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use quinn::VarInt;

use crate::driver::error::ConnectError;
use crate::proto::error::{PATH_ABANDONED, ProtocolError};
use crate::proto::handshake::{self, AnswerError};
use crate::proto::ids::{PathId, SessionId};
use crate::proto::wire::frame::{Frame, FrameReader};

/// How long a handshake (OPEN/JOIN answer, token) may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Unix time in milliseconds (the only wall-clock reading of the crate:
/// the core gets it as an input).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl From<AnswerError> for ConnectError {
    fn from(e: AnswerError) -> Self {
        match e {
            AnswerError::Refused(reason) => ConnectError::Refused(reason),
            AnswerError::Protocol(e) => ConnectError::Protocol(e),
        }
    }
}

pub(crate) async fn write_frame(
    send: &mut quinn::SendStream,
    frame: &Frame,
) -> Result<(), quinn::WriteError> {
    write_frames(send, std::slice::from_ref(frame)).await
}

/// Writes `frames` in order in one write (so they can share a packet).
pub(crate) async fn write_frames(
    send: &mut quinn::SendStream,
    frames: &[Frame],
) -> Result<(), quinn::WriteError> {
    let mut buf = BytesMut::new();
    for frame in frames {
        frame.encode(&mut buf);
    }
    send.write_all(&buf).await
}

/// The next frame of a control channel, within [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
    reader: &mut FrameReader,
) -> Result<Frame, ConnectError> {
    let work = async {
        loop {
            if let Some(f) = reader.next_frame().map_err(ProtocolError::from)? {
                return Ok(f);
            }
            match recv.read_chunk(64 * 1024, true).await? {
                Some(chunk) => reader.push(&chunk.bytes),
                None => return Err(ConnectError::ControlClosed),
            }
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .map_err(|_| ConnectError::TimedOut)?
}

/// A joined path's control channel: its two halves and the frame reader that
/// may already hold frames that followed WELCOME.
pub(crate) type JoinedControl = (quinn::SendStream, quinn::RecvStream, FrameReader);

/// Sends JOIN as the first frame of `conn`'s control stream and waits for the
/// WELCOME of that session and path. Any other answer (or none) closes `conn`.
pub(crate) async fn send_join(
    conn: &quinn::Connection,
    session: SessionId,
    path: PathId,
    token: Bytes,
) -> Result<JoinedControl, ConnectError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, &handshake::join(session, path, token)).await?;
    let mut reader = FrameReader::new();
    match read_frame(&mut recv, &mut reader).await {
        Ok(answer) => match handshake::on_join_answer(&answer, session, path) {
            Ok(()) => Ok((send, recv, reader)),
            Err(AnswerError::Refused(reason)) => Err(ConnectError::Refused(reason)),
            Err(e) => {
                conn.close(
                    VarInt::from_u32(PATH_ABANDONED),
                    b"unexpected answer to JOIN",
                );
                Err(e.into())
            }
        },
        Err(e) => {
            conn.close(VarInt::from_u32(PATH_ABANDONED), b"no answer to JOIN");
            Err(e)
        }
    }
}
