//! Session-wide counters, as the application reads them ([`Session::stats`](crate::Session::stats)).

/// Session-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Bytes the application wrote.
    pub bytes_written: u64,
    /// Payload bytes handed to paths (first sends, redundant copies and re-sends).
    pub bytes_sent: u64,
    /// Of `bytes_sent`, re-sends of dead paths' data.
    pub bytes_resent: u64,
    /// Bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received from the peer (duplicates included).
    pub bytes_received: u64,
    /// Bytes written and not yet acknowledged (retained for re-sending).
    pub bytes_retained: u64,
    /// Paths that joined.
    pub paths_added: u64,
    /// Paths abandoned.
    pub paths_abandoned: u64,
    /// (Client) Dials started to re-create dead paths.
    pub recreate_attempts: u64,
    /// (Client) Dead paths brought back.
    pub paths_recreated: u64,
    /// (Client) Dead paths given up after their attempts.
    pub paths_given_up: u64,
    /// Streams opened locally.
    pub streams_opened: u64,
    /// Streams opened by the peer.
    pub streams_accepted: u64,
    /// Late segments for streams already released, and segments from a
    /// secondary for bytes the client held already after their grant was spent
    /// (ignored, nothing buffered).
    pub late_segments: u64,
    /// Backpressure signals received from the peer.
    pub backpressure_signals: u64,
    /// (Client) payload bytes received from secondary servers inside their
    /// grants (duplicates included).
    pub bytes_from_secondaries: u64,
    /// (Client) data segments from secondary servers refused because no grant
    /// the primary sent covers them (wrong stream or range, expired); each one
    /// closed the secondary's path and none of its bytes was buffered.
    pub segments_outside_grant: u64,
    /// (Primary server) ranges delegated to secondary servers.
    pub grants_issued: u64,
}
