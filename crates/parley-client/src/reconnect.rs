//! The reconnect and heartbeat decisions, with no I/O and no clock.
//!
//! The connection task feeds in what happened (how a link ended, how long it
//! lived, a random number) and gets back what to do. Keeping the choices here
//! lets the tests cover every branch without sockets or sleeping, in the
//! spirit of sans-IO protocol engines.

use std::time::Duration;

use parley_proto::pb;

use crate::error::ClientError;
use crate::event::ConnectionState;

/// A link that lived this long is considered stable: the next loss starts
/// backing off from the beginning again. Shorter links keep counting, so a
/// server that accepts and drops at once is not hammered.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Exponential backoff with full jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Ceiling of the first attempt's delay.
    pub(crate) initial: Duration,
    /// Ceiling of every delay.
    pub(crate) max: Duration,
}

impl Backoff {
    /// The largest delay for `attempt` (from 1): `min(max, initial * 2^(attempt-1))`.
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let factor = 1u128 << doublings;
        let nanos = self.initial.as_nanos().saturating_mul(factor);
        if nanos >= self.max.as_nanos() {
            self.max
        } else {
            // nanos < max, and max came from a Duration, so it fits.
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        }
    }

    /// The delay before `attempt`: uniform in `0..=ceiling(attempt)`, picked
    /// by `random` (any u64 from an RNG).
    pub(crate) fn delay(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(attempt).as_nanos();
        let nanos = u128::from(random) % (ceiling + 1);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The attempt number to use after a link that lived `uptime` was lost,
/// given that `attempt` attempts were needed to bring it up.
pub(crate) fn first_attempt_after(uptime: Duration, attempt: u32) -> u32 {
    if uptime >= STABLE_AFTER {
        1
    } else {
        attempt.saturating_add(1)
    }
}

/// How a live link came to an end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkEnd {
    /// The network or the server dropped it.
    Lost,
    /// The server announced that this connection's session was revoked.
    SessionRevoked,
    /// The application called `close()`.
    ClosedByUser,
}

/// What the connection task does next.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Next {
    /// Wait, then try to connect again.
    Reconnect,
    /// Announce this final state and stop.
    Stop(ConnectionState),
}

/// The decision after a link ended. `reconnect` is the configured switch;
/// `user_logged_out` is true after an explicit logout on this client.
pub(crate) fn after_link(end: LinkEnd, reconnect: bool, user_logged_out: bool) -> Next {
    match end {
        LinkEnd::ClosedByUser => Next::Stop(ConnectionState::Closed),
        LinkEnd::SessionRevoked => Next::Stop(ConnectionState::LoggedOut),
        LinkEnd::Lost if reconnect && !user_logged_out => Next::Reconnect,
        LinkEnd::Lost => Next::Stop(ConnectionState::Closed),
    }
}

/// The decision after a reconnect attempt failed with `err`.
pub(crate) fn after_failed_attempt(err: &ClientError) -> Next {
    match err {
        // Never retried silently: the user has to look at it.
        ClientError::CertificateChanged { .. } => Next::Stop(ConnectionState::Closed),
        ClientError::Server(e) => match e.kind() {
            pb::ErrorCode::SessionInvalid => Next::Stop(ConnectionState::LoggedOut),
            pb::ErrorCode::UnsupportedVersion => Next::Stop(ConnectionState::Closed),
            _ => Next::Reconnect,
        },
        _ => Next::Reconnect,
    }
}

/// When to send pings and when to give up on a silent server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// Send a `Ping` after sending nothing for this long.
    pub(crate) interval: Duration,
    /// Treat the link as lost after receiving nothing for this long.
    pub(crate) dead_after: Duration,
}

impl Heartbeat {
    /// The heartbeat the server asked for in `Welcome`. Without an interval
    /// the client pings at a third of the idle timeout; with neither, every
    /// 30 s so a dead link is still noticed.
    pub(crate) fn from_welcome(welcome: &pb::Welcome) -> Heartbeat {
        let interval = match (welcome.heartbeat_interval_ms, welcome.idle_timeout_ms) {
            (0, 0) => Duration::from_secs(30),
            (0, idle) => Duration::from_millis(u64::from(idle / 3).max(1)),
            (beat, _) => Duration::from_millis(u64::from(beat)),
        };
        // Three intervals: at least two pings went unanswered.
        Heartbeat {
            interval,
            dead_after: interval.saturating_mul(3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        initial: Duration::from_millis(250),
        max: Duration::from_secs(30),
    };

    #[test]
    fn ceiling_doubles_up_to_the_maximum() {
        let ms = |a| BACKOFF.ceiling(a).as_millis();
        assert_eq!(ms(0), 250);
        assert_eq!(ms(1), 250);
        assert_eq!(ms(2), 500);
        assert_eq!(ms(3), 1000);
        assert_eq!(ms(7), 16_000);
        assert_eq!(ms(8), 30_000);
        assert_eq!(ms(u32::MAX), 30_000);
    }

    #[test]
    fn delay_is_full_jitter_within_the_ceiling() {
        assert_eq!(BACKOFF.delay(1, 0), Duration::ZERO);
        let cap = BACKOFF.ceiling(3);
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap();
        assert_eq!(
            BACKOFF.delay(3, cap_nanos),
            cap,
            "the ceiling itself is reachable"
        );
        assert_eq!(BACKOFF.delay(3, cap_nanos + 1), Duration::ZERO);
        for random in [1u64, 12345, u64::MAX / 3, u64::MAX] {
            for attempt in 1..40 {
                assert!(BACKOFF.delay(attempt, random) <= BACKOFF.ceiling(attempt));
            }
        }
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let b = Backoff {
            initial: Duration::from_secs(u64::MAX / 2),
            max: Duration::MAX,
        };
        assert!(b.ceiling(64) <= Duration::MAX);
        let _ = b.delay(64, u64::MAX);
    }

    #[test]
    fn stable_links_reset_the_attempt_count() {
        assert_eq!(first_attempt_after(STABLE_AFTER, 5), 1);
        assert_eq!(first_attempt_after(Duration::from_millis(10), 1), 2);
        assert_eq!(first_attempt_after(Duration::ZERO, u32::MAX), u32::MAX);
    }

    #[test]
    fn link_end_decisions() {
        assert_eq!(after_link(LinkEnd::Lost, true, false), Next::Reconnect);
        assert_eq!(
            after_link(LinkEnd::Lost, false, false),
            Next::Stop(ConnectionState::Closed)
        );
        assert_eq!(
            after_link(LinkEnd::Lost, true, true),
            Next::Stop(ConnectionState::Closed)
        );
        assert_eq!(
            after_link(LinkEnd::SessionRevoked, true, false),
            Next::Stop(ConnectionState::LoggedOut)
        );
        assert_eq!(
            after_link(LinkEnd::ClosedByUser, true, false),
            Next::Stop(ConnectionState::Closed)
        );
    }

    #[test]
    fn failed_attempt_decisions() {
        let server = |code| ClientError::Server(pb::Error::new(code, "x"));
        assert_eq!(
            after_failed_attempt(&server(pb::ErrorCode::SessionInvalid)),
            Next::Stop(ConnectionState::LoggedOut)
        );
        assert_eq!(
            after_failed_attempt(&server(pb::ErrorCode::UnsupportedVersion)),
            Next::Stop(ConnectionState::Closed)
        );
        assert_eq!(
            after_failed_attempt(&server(pb::ErrorCode::ServerBusy)),
            Next::Reconnect
        );
        assert_eq!(after_failed_attempt(&ClientError::Timeout), Next::Reconnect);
        let changed = ClientError::CertificateChanged {
            expected: "a".into(),
            actual: "b".into(),
        };
        assert_eq!(
            after_failed_attempt(&changed),
            Next::Stop(ConnectionState::Closed)
        );
    }

    #[test]
    fn heartbeat_follows_the_welcome() {
        let welcome = |beat, idle| pb::Welcome {
            heartbeat_interval_ms: beat,
            idle_timeout_ms: idle,
            ..Default::default()
        };
        let hb = Heartbeat::from_welcome(&welcome(20_000, 60_000));
        assert_eq!(hb.interval, Duration::from_secs(20));
        assert_eq!(hb.dead_after, Duration::from_secs(60));
        assert_eq!(
            Heartbeat::from_welcome(&welcome(0, 90_000)).interval,
            Duration::from_secs(30)
        );
        assert_eq!(
            Heartbeat::from_welcome(&welcome(0, 0)).interval,
            Duration::from_secs(30)
        );
    }
}
