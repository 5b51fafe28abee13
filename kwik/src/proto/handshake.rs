//! Opening a path: what the first frame on a connection's control channel
//! means, and the answer to it (docs/PROTOCOL.md §3.1, §3.2). A client sends
//! OPEN (a new session) or JOIN (a further path, with a token); a server
//! answers WELCOME or REFUSED. The decisions live here; the driver only
//! carries the frames and acts on the outcome.
//!
//! This sits beside [`session`](crate::proto::session) rather than inside it:
//! it creates sessions and asks them whether a path may join, so it depends on
//! the session core and the core never on it.

use std::time::Instant;

use bytes::Bytes;
use kwik_presentation::{Presentation, Side};

use crate::proto::config::{SecondaryJoins, SessionConfig};
use crate::proto::error::ProtocolError;
use crate::proto::ids::{PathId, SessionId};
use crate::proto::multiserver::token::{TokenError, TokenIssuer};
use crate::proto::session::SessionState;
use crate::proto::session::recv::new_presentation;
use crate::proto::wire::frame::{BASE_VERSION, Frame, RefuseReason};

/// Why the answer to an OPEN or a JOIN does not establish the path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AnswerError {
    /// The server answered REFUSED.
    Refused(RefuseReason),
    /// The server answered something else.
    Protocol(ProtocolError),
}

/// (Client) A session being opened: OPEN sent, WELCOME awaited.
#[derive(Debug)]
pub(crate) struct Opening {
    config: SessionConfig,
    presentation: Presentation,
    offered: u64,
}

impl Opening {
    /// A new session's receive side, and the OPEN that offers its credits and
    /// `version` (the configured version, or [`BASE_VERSION`] when a server
    /// refused that: see [`Opening::fallback`]).
    pub(crate) fn new(config: SessionConfig, version: u64, now: Instant) -> (Self, Frame) {
        let presentation = new_presentation(&config.presentation, now);
        let open = Frame::Open {
            version,
            max_data: presentation.session_credit(),
            stream_credit: config.presentation.get_stream_window(),
        };
        (
            Self {
                config,
                presentation,
                offered: version,
            },
            open,
        )
    }

    /// The version to offer again after a server answered REFUSED `1`
    /// (version) to `offered`: [`BASE_VERSION`], which every server speaks,
    /// unless that was refused already.
    pub(crate) fn fallback(offered: u64) -> Option<u64> {
        (offered > BASE_VERSION).then_some(BASE_VERSION)
    }

    /// The server's answer: WELCOME for path 0 starts the session.
    pub(crate) fn on_answer(
        self,
        answer: Frame,
        now: Instant,
    ) -> Result<SessionState, AnswerError> {
        match answer {
            // The server runs the session at the version offered or below it.
            Frame::Welcome {
                session,
                path,
                max_data,
                stream_credit,
                version,
            } if path == PathId::INITIAL && version <= self.offered => Ok(SessionState::new(
                session,
                Side::Client,
                self.config,
                self.presentation,
                max_data,
                stream_credit,
                now,
            )
            .with_version(version)),
            Frame::Refused { reason } => Err(AnswerError::Refused(reason)),
            _ => Err(AnswerError::Protocol(ProtocolError::UnexpectedFrame(
                "answer to OPEN",
            ))),
        }
    }
}

/// (Client) The JOIN for `path` of `session`, showing `token`.
pub(crate) fn join(session: SessionId, path: PathId, token: Bytes) -> Frame {
    Frame::Join {
        session,
        path,
        token,
    }
}

/// (Client) The server's answer to the JOIN for `path` of `session`: only a
/// WELCOME of that session and path joins it.
pub(crate) fn on_join_answer(
    answer: &Frame,
    session: SessionId,
    path: PathId,
) -> Result<(), AnswerError> {
    match answer {
        Frame::Welcome {
            session: s,
            path: p,
            ..
        } if *s == session && *p == path => Ok(()),
        Frame::Refused { reason } => Err(AnswerError::Refused(*reason)),
        _ => Err(AnswerError::Protocol(ProtocolError::UnexpectedFrame(
            "answer to JOIN",
        ))),
    }
}

/// (Server) A JOIN: which session and path it asks for, with its token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JoinRequest {
    pub(crate) session: SessionId,
    pub(crate) path: PathId,
    pub(crate) token: Bytes,
}

impl JoinRequest {
    /// Checks the token (bound to the session and path, single use, not
    /// expired at `now_ms`) against `tokens`.
    pub(crate) fn verify(&self, tokens: &mut TokenIssuer, now_ms: u64) -> Result<(), RefuseReason> {
        tokens
            .verify(self.session, self.path, &self.token, now_ms)
            .map_err(|e| match e {
                TokenError::Expired => RefuseReason::ExpiredToken,
                TokenError::Reused => RefuseReason::ReusedToken,
                _ => RefuseReason::BadToken,
            })
    }
}

/// (Server) What to do with the first frame of a connection.
#[derive(Debug)]
pub(crate) enum FirstFrame {
    /// OPEN: a new session. Send `welcome`, then drive `state`.
    Open {
        state: Box<SessionState>,
        welcome: Frame,
    },
    /// Answer REFUSED for `reason` and end the control channel.
    Refuse(RefuseReason),
    /// JOIN of a session this endpoint may hold: verify the token, then ask
    /// the session ([`admit_join`]).
    Join(JoinRequest),
    /// JOIN of a session this endpoint does not hold, while it accepts
    /// secondary paths: verify the token, then answer
    /// [`secondary_welcome`].
    Secondary(JoinRequest),
    /// Not a first frame: close the connection.
    Unexpected,
}

/// (Server) Reads the first frame of a connection. `config` and `joins` are
/// the endpoint's; `holds` says whether a session lives at this endpoint;
/// `new_id` names a new session.
pub(crate) fn on_first_frame(
    frame: Frame,
    config: &SessionConfig,
    joins: SecondaryJoins,
    holds: impl FnOnce(SessionId) -> bool,
    new_id: impl FnOnce() -> SessionId,
    now: Instant,
) -> FirstFrame {
    match frame {
        Frame::Open {
            version,
            max_data,
            stream_credit,
        } => {
            // Any version from the base one up to the configured one: the
            // session runs at the version the client offered.
            if !(BASE_VERSION..=config.version.number()).contains(&version) {
                return FirstFrame::Refuse(RefuseReason::Version);
            }
            let id = new_id();
            let presentation = new_presentation(&config.presentation, now);
            let welcome = Frame::Welcome {
                session: id,
                path: PathId::INITIAL,
                max_data: presentation.session_credit(),
                stream_credit: config.presentation.get_stream_window(),
                version,
            };
            let state = SessionState::new(
                id,
                Side::Server,
                config.clone(),
                presentation,
                max_data,
                stream_credit,
                now,
            )
            .with_version(version);
            FirstFrame::Open {
                state: Box::new(state),
                welcome,
            }
        }
        Frame::Join {
            session,
            path,
            token,
        } => {
            let request = JoinRequest {
                session,
                path,
                token,
            };
            if joins == SecondaryJoins::Accept && !holds(session) {
                FirstFrame::Secondary(request)
            } else {
                FirstFrame::Join(request)
            }
        }
        _ => FirstFrame::Unexpected,
    }
}

/// (Server) Whether `state` admits a JOIN whose token verified, as `path`:
/// the WELCOME to answer with, or why not. The caller adds the path once the
/// WELCOME is on its way.
pub(crate) fn admit_join(state: &SessionState, path: PathId) -> Result<Frame, RefuseReason> {
    if state.close_reason().is_some() {
        return Err(RefuseReason::UnknownSession);
    }
    if state.has_path(path) {
        return Err(RefuseReason::PathInUse);
    }
    if state.live_paths() >= state.config().max_paths {
        return Err(RefuseReason::Unavailable);
    }
    Ok(Frame::Welcome {
        session: state.id(),
        path,
        max_data: state.presentation().session_credit(),
        stream_credit: state.config().presentation.get_stream_window(),
        version: state.version(),
    })
}

/// (Secondary server) The WELCOME of a verified secondary JOIN. A secondary
/// holds no receive window: it grants the client no credit. It is sent in the
/// version-1 form: a secondary only writes data, and nothing it receives
/// differs between the versions.
pub(crate) fn secondary_welcome(request: &JoinRequest) -> Frame {
    Frame::Welcome {
        session: request.session,
        path: request.path,
        max_data: 0,
        stream_credit: 0,
        version: BASE_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::config::ProtocolVersion;
    use crate::proto::multiserver::token::TokenKey;
    use crate::proto::wire::frame::PROTOCOL_VERSION;

    fn first(frame: Frame, joins: SecondaryJoins, held: bool) -> FirstFrame {
        on_first_frame(
            frame,
            &SessionConfig::default(),
            joins,
            |_| held,
            || SessionId::from_bytes([4; 16]),
            Instant::now(),
        )
    }

    #[test]
    fn open_of_this_version_starts_a_session_and_others_are_refused() {
        let now = Instant::now();
        let (opening, open) = Opening::new(SessionConfig::default(), PROTOCOL_VERSION, now);
        let FirstFrame::Open { state, welcome } =
            first(open.clone(), SecondaryJoins::Refuse, false)
        else {
            panic!("OPEN starts a session");
        };
        assert_eq!(state.side(), Side::Server);
        assert_eq!(state.id(), SessionId::from_bytes([4; 16]));
        let client = opening.on_answer(welcome, now).expect("WELCOME for path 0");
        assert_eq!(client.id(), state.id());
        assert_eq!(client.side(), Side::Client);
        assert_eq!(
            (client.version(), state.version()),
            (PROTOCOL_VERSION, PROTOCOL_VERSION)
        );
        // A version-1 client gets a version-1 session and WELCOME.
        let (old, open_v1) = Opening::new(SessionConfig::default(), BASE_VERSION, now);
        let FirstFrame::Open { state, welcome } = first(open_v1, SecondaryJoins::Refuse, false)
        else {
            panic!("a version-1 OPEN starts a session");
        };
        assert!(matches!(
            welcome,
            Frame::Welcome {
                version: BASE_VERSION,
                ..
            }
        ));
        assert_eq!(state.version(), BASE_VERSION);
        assert_eq!(old.on_answer(welcome, now).unwrap().version(), BASE_VERSION);
        // A server configured for version 1 refuses version 2, as a server of
        // version 1 does; the client then offers version 1.
        let v1_server = SessionConfig::default().protocol_version(ProtocolVersion::V1);
        let refused = on_first_frame(
            open.clone(),
            &v1_server,
            SecondaryJoins::Refuse,
            |_| false,
            || SessionId::from_bytes([4; 16]),
            now,
        );
        assert!(matches!(refused, FirstFrame::Refuse(RefuseReason::Version)));
        assert_eq!(Opening::fallback(PROTOCOL_VERSION), Some(BASE_VERSION));
        assert_eq!(Opening::fallback(BASE_VERSION), None);

        let Frame::Open {
            max_data,
            stream_credit,
            ..
        } = open
        else {
            unreachable!()
        };
        let other = Frame::Open {
            version: PROTOCOL_VERSION + 1,
            max_data,
            stream_credit,
        };
        assert!(matches!(
            first(other, SecondaryJoins::Refuse, false),
            FirstFrame::Refuse(RefuseReason::Version)
        ));
        assert!(matches!(
            first(Frame::Ping { seq: 1 }, SecondaryJoins::Refuse, false),
            FirstFrame::Unexpected
        ));
        let (opening, _) = Opening::new(SessionConfig::default(), PROTOCOL_VERSION, now);
        assert_eq!(
            opening
                .on_answer(
                    Frame::Refused {
                        reason: RefuseReason::Unavailable
                    },
                    now
                )
                .unwrap_err(),
            AnswerError::Refused(RefuseReason::Unavailable)
        );
    }

    #[test]
    fn joins_go_to_the_session_or_to_the_secondary_and_tokens_are_checked() {
        let (session, path) = (SessionId::from_bytes([4; 16]), PathId::new(1));
        let mut tokens = TokenIssuer::new(TokenKey::new([1; 32]));
        let token = tokens.issue(session, path, 1_000, 10_000);
        let join = join(session, path, token.clone());
        assert!(matches!(
            first(join.clone(), SecondaryJoins::Accept, true),
            FirstFrame::Join(_)
        ));
        assert!(matches!(
            first(join.clone(), SecondaryJoins::Refuse, false),
            FirstFrame::Join(_)
        ));
        let FirstFrame::Secondary(request) = first(join, SecondaryJoins::Accept, false) else {
            panic!("a JOIN for an unknown session goes to the secondary");
        };
        assert_eq!(request.verify(&mut tokens, 2_000), Ok(()));
        assert_eq!(
            request.verify(&mut tokens, 2_000),
            Err(RefuseReason::ReusedToken)
        );
        let late = JoinRequest {
            session,
            path,
            token: tokens.issue(session, path, 1_000, 10),
        };
        assert_eq!(
            late.verify(&mut tokens, 2_000),
            Err(RefuseReason::ExpiredToken)
        );
        let forged = JoinRequest {
            session,
            path,
            token: Bytes::from(vec![1u8; crate::TOKEN_LEN]),
        };
        assert_eq!(
            forged.verify(&mut tokens, 2_000),
            Err(RefuseReason::BadToken)
        );
        assert_eq!(
            secondary_welcome(&request),
            Frame::Welcome {
                session,
                path,
                max_data: 0,
                stream_credit: 0,
                version: BASE_VERSION,
            }
        );

        let welcome = Frame::Welcome {
            session,
            path,
            max_data: 1,
            stream_credit: 1,
            version: PROTOCOL_VERSION,
        };
        assert_eq!(on_join_answer(&welcome, session, path), Ok(()));
        assert!(matches!(
            on_join_answer(&welcome, session, PathId::new(2)),
            Err(AnswerError::Protocol(_))
        ));
    }

    #[test]
    fn a_session_admits_a_join_while_it_has_room() {
        let now = Instant::now();
        let FirstFrame::Open { mut state, .. } = first(
            Opening::new(SessionConfig::default(), PROTOCOL_VERSION, now).1,
            SecondaryJoins::Refuse,
            false,
        ) else {
            panic!("OPEN starts a session");
        };
        assert!(matches!(
            admit_join(&state, PathId::new(1)),
            Ok(Frame::Welcome { path, .. }) if path == PathId::new(1)
        ));
        assert_eq!(
            admit_join(&state, PathId::INITIAL),
            Err(RefuseReason::PathInUse)
        );
        state.close(0, Bytes::new());
        assert_eq!(
            admit_join(&state, PathId::new(1)),
            Err(RefuseReason::UnknownSession)
        );
    }
}
