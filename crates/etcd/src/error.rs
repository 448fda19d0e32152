//! The errors the etcd services answer with, as one enum, and the one
//! table that turns each into a gRPC status: etcd's own code and message
//! (`etcdserver: ...`, which etcd's clients match on), or Flotilla's
//! (`flotilla: ...`), with a typed [`signal`] where a member or
//! Flotilla's client acts on the error.
//!
//! The request checks of [`crate::validate`] keep their own enum
//! ([`Invalid`]), which has a table of its own and converts through
//! [`EtcdError::Invalid`].

use flotilla_proto::signal::{self, Kind};
use tonic::{Code, Status};

use crate::validate::Invalid;
use flotilla_kv::Refusal;

/// An error an etcd service answers with.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A request the boundary checks refuse.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The command is over `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// No outcome before the request's deadline (etcd's timeout); what
    /// was waited for, if known.
    #[error("etcdserver: request timed out{}", waited(.0))]
    Timeout(Option<&'static str>),
    /// The member is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// Too many requests wait for an outcome here.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// A read at a compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// MoveLeader sent to a member that does not lead.
    #[error("etcdserver: not leader")]
    NotLeaderForMove,
    /// MoveLeader to a member that is not a voter (or not a member).
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// MoveLeader did not see the new leader in time.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    /// A put keeping its value (`ignore_value`) of a key that does not
    /// exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A lease that does not exist (or lease 0 granted).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant of a lease id in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A grant over etcd's largest TTL.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A request only the leader answers, while no leader is known.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// A write that adds data past the quota, or while a NOSPACE alarm
    /// is raised.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A write while a CORRUPT alarm is raised: members' data differed.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// A lock or election contender's lease ended while it waited.
    #[error("session expired")]
    RecipeSessionExpired,
    /// Proclaim or Resign without a leader key.
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    /// Proclaim by a candidate that no longer leads.
    #[error("election: not leader")]
    ElectionNotLeader,
    /// Leader of an election nobody leads.
    #[error("election: no leader")]
    ElectionNoLeader,
    /// A read at a revision not yet written.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// No member with that id.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// Another member has that peer URL.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// A member with that id exists, or existed and was removed (a
    /// removed id is never reused).
    #[error("etcdserver: member ID already exist{}", removed(.0))]
    MemberIdExists(Option<u64>),
    /// Promote of a voter.
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// Promote of a learner that lags the leader.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// Too many learners to add one.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// A removal would leave too few started voters.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// A change would leave the cluster without a live quorum.
    #[error("etcdserver: unhealthy cluster")]
    UnhealthyCluster,
    /// A forwarded membership change reached a member that does not lead.
    #[error("flotilla: not the leader")]
    NotLeader,
    /// The client session expired before the request was answered.
    #[error(
        "flotilla: the client session expired before the request was answered; \
         its outcome is unknown: start a new session"
    )]
    SessionExpired,
    /// A request Flotilla refuses where etcd would take it, with why (the
    /// README's table of refusals names each).
    #[error("flotilla: {0}")]
    Refused(String),
    /// A broken promise inside this member (a bug), with what broke.
    #[error("{0}")]
    Internal(String),
    /// The auth store refused (etcd's auth errors, messages included).
    #[error(transparent)]
    Auth(flotilla_kv::AuthError),
}

/// etcd's gRPC code for each auth error (its `rpctypes`).
fn auth_code(e: flotilla_kv::AuthError) -> Code {
    use flotilla_kv::AuthError as A;
    match e {
        A::UserEmpty | A::RoleEmpty | A::AuthFailed | A::InvalidAuthMgmt => Code::InvalidArgument,
        A::PermissionDenied => Code::PermissionDenied,
        A::InvalidAuthToken => Code::Unauthenticated,
        A::RootUserNotExist
        | A::RootRoleNotExist
        | A::UserAlreadyExist
        | A::UserNotFound
        | A::RoleAlreadyExist
        | A::RoleNotFound
        | A::RoleNotGranted
        | A::PermissionNotGranted
        | A::AuthNotEnabled => Code::FailedPrecondition,
    }
}

fn waited(what: &Option<&'static str>) -> String {
    what.map(|w| format!(" ({w})")).unwrap_or_default()
}

fn removed(id: &Option<u64>) -> String {
    id.map(|id| format!(" (member {id} was removed, and a removed ID is never reused)"))
        .unwrap_or_default()
}

impl EtcdError {
    /// The gRPC code, and the signal a member or Flotilla's client acts
    /// on: the one table.
    fn code(&self) -> (Code, Option<Kind>) {
        use EtcdError as E;
        match self {
            E::Invalid(i) => (i.code(), None),
            E::RequestTooLarge | E::KeyNotFound => (Code::InvalidArgument, None),
            E::Timeout(_) | E::LeaderTransferTimeout => (Code::DeadlineExceeded, None),
            E::NotLeaderForMove => (Code::Unavailable, None),
            E::BadLeaderTransferee => (Code::FailedPrecondition, None),
            E::Stopped => (Code::Unavailable, None),
            E::TooManyRequests => (Code::ResourceExhausted, None),
            E::NoSpace => (Code::ResourceExhausted, Some(Kind::NoSpace)),
            E::Corrupt => (Code::DataLoss, None),
            E::Compacted | E::FutureRevision => (Code::OutOfRange, None),
            E::MemberNotFound | E::LeaseNotFound => (Code::NotFound, None),
            E::LeaseExists => (Code::FailedPrecondition, None),
            E::LeaseTtlTooLarge => (Code::OutOfRange, None),
            E::NoLeader => (Code::Unavailable, None),
            // etcd returns its recipes' errors as they are: gRPC's UNKNOWN.
            E::RecipeSessionExpired | E::ElectionNotLeader | E::ElectionNoLeader => {
                (Code::Unknown, None)
            }
            // A plain error in etcd's election server: UNKNOWN.
            E::MissingLeaderKey => (Code::Unknown, None),
            E::PeerUrlExists
            | E::MemberIdExists(_)
            | E::NotLearner
            | E::LearnerNotReady
            | E::TooManyLearners
            | E::NotEnoughStartedMembers => (Code::FailedPrecondition, None),
            E::UnhealthyCluster => (Code::Unavailable, Some(Kind::UnhealthyCluster)),
            E::NotLeader => (Code::Unavailable, Some(Kind::NotLeader)),
            E::SessionExpired => (Code::FailedPrecondition, Some(Kind::SessionExpired)),
            E::Refused(_) => (Code::FailedPrecondition, None),
            E::Internal(_) => (Code::Internal, None),
            E::Auth(a) => (auth_code(*a), None),
        }
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        let (code, kind) = e.code();
        match kind {
            Some(kind) => signal::status(code, e.to_string(), kind),
            None => Status::new(code, e.to_string()),
        }
    }
}

/// A command the replicas refused as they applied or read it, as etcd
/// answers it.
impl From<Refusal> for EtcdError {
    fn from(r: Refusal) -> EtcdError {
        match r {
            Refusal::EmptyKey { .. } => EtcdError::Invalid(Invalid::EmptyKey),
            Refusal::Compacted { .. } => EtcdError::Compacted,
            Refusal::FutureRevision { .. } => EtcdError::FutureRevision,
            Refusal::KeyNotFound => EtcdError::KeyNotFound,
            Refusal::LeaseNotFound { .. } => EtcdError::LeaseNotFound,
            Refusal::LeaseExists { .. } => EtcdError::LeaseExists,
            Refusal::NoSpace => EtcdError::NoSpace,
            Refusal::Corrupt => EtcdError::Corrupt,
            Refusal::Auth(a) => EtcdError::Auth(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_etcds_codes_and_messages() {
        let cases = [
            (
                EtcdError::RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                EtcdError::Timeout(None),
                Code::DeadlineExceeded,
                "etcdserver: request timed out",
            ),
            (
                EtcdError::Timeout(Some("no leader")),
                Code::DeadlineExceeded,
                "etcdserver: request timed out (no leader)",
            ),
            (
                EtcdError::Stopped,
                Code::Unavailable,
                "etcdserver: server stopped",
            ),
            (
                EtcdError::TooManyRequests,
                Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            (
                EtcdError::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                EtcdError::MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                EtcdError::MemberIdExists(Some(7)),
                Code::FailedPrecondition,
                "etcdserver: member ID already exist (member 7 was removed, and a removed ID is never reused)",
            ),
        ];
        for (e, code, message) in cases {
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, message));
            assert_eq!(signal::kind(&s), None);
        }
    }

    #[test]
    fn lease_and_recipe_errors_are_etcd_s() {
        let cases = [
            (
                EtcdError::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                EtcdError::LeaseExists,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                EtcdError::LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                EtcdError::NoLeader,
                Code::Unavailable,
                "etcdserver: no leader",
            ),
            (
                EtcdError::Corrupt,
                Code::DataLoss,
                "etcdserver: corrupt cluster",
            ),
            (
                EtcdError::ElectionNotLeader,
                Code::Unknown,
                "election: not leader",
            ),
            (
                EtcdError::ElectionNoLeader,
                Code::Unknown,
                "election: no leader",
            ),
            (
                EtcdError::RecipeSessionExpired,
                Code::Unknown,
                "session expired",
            ),
            (
                EtcdError::MissingLeaderKey,
                Code::Unknown,
                "\"leader\" field must be provided",
            ),
        ];
        for (e, code, message) in cases {
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, message));
        }
    }

    #[test]
    fn signals_ride_with_the_errors_members_act_on() {
        let signalled = [
            (EtcdError::NotLeader, Kind::NotLeader),
            (EtcdError::UnhealthyCluster, Kind::UnhealthyCluster),
            (EtcdError::SessionExpired, Kind::SessionExpired),
            (EtcdError::NoSpace, Kind::NoSpace),
        ];
        for (e, kind) in signalled {
            assert_eq!(signal::kind(&Status::from(e)), Some(kind));
        }
    }
}
