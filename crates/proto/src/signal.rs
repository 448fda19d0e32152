//! Typed signals in gRPC errors ([`v1::Signal`] in the status details):
//! how a member tells another member, or Flotilla's client, that it does
//! not lead, that the sender was removed, or that a session expired,
//! without anyone parsing the error's message.
//!
//! Invariant: [`kind`] is `None` for any status this module did not make
//! (details empty, from another program, or undecodable).

use prost::Message as _;
use tonic::{Code, Status};

pub use crate::generated::flotilla::signal::v1;
pub use v1::signal::Kind;

/// A status with `code` and `message` that carries the signal `kind`.
pub fn status(code: Code, message: impl Into<String>, kind: Kind) -> Status {
    let signal = v1::Signal { kind: kind as i32 };
    Status::with_details(code, message, signal.encode_to_vec().into())
}

/// The signal `status` carries, if any.
pub fn kind(status: &Status) -> Option<Kind> {
    let signal = v1::Signal::decode(status.details()).ok()?;
    match Kind::try_from(signal.kind) {
        Ok(Kind::Unspecified) | Err(_) => None,
        Ok(k) => Some(k),
    }
}

/// `head` and the errors under `e`, each once: tonic says only "transport
/// error" or the status's message on top, and a failed connection or TLS
/// handshake (an unknown CA, a refused certificate) is said underneath.
pub fn with_causes(head: String, e: &dyn std::error::Error) -> String {
    let mut out = head;
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_survives_the_status_and_plain_statuses_carry_none() {
        for k in [
            Kind::NotLeader,
            Kind::RemovedMember,
            Kind::SessionExpired,
            Kind::UnhealthyCluster,
            Kind::NoSpace,
        ] {
            let s = status(Code::Unavailable, "text", k);
            assert_eq!(kind(&s), Some(k));
            assert_eq!(s.message(), "text");
        }
        assert_eq!(kind(&Status::unavailable("flotilla: not the leader")), None);
        let garbage = Status::with_details(Code::Unknown, "x", vec![0xff, 0xff].into());
        assert_eq!(kind(&garbage), None);
    }
}
