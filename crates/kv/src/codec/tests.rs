//! Tests of the KV codec: round trips, old encodings, and bad input named
//! by what was wrong.

use super::*;

fn sample_txn() -> Op {
    Op::Txn(Txn {
        compares: vec![
            Compare::value_is("a", "1"),
            Compare::absent("b"),
            Compare {
                key: Bytes::from_static(b"c"),
                op: CmpOp::Less,
                target: Target::ModRev(7),
                span: CompareSpan::Key,
            },
            Compare {
                key: Bytes::from_static(b"d"),
                op: CmpOp::NotEqual,
                target: Target::Value(Bytes::from_static(b"x")),
                span: CompareSpan::Range(Some(Bytes::from_static(b"e"))),
            },
            Compare {
                key: Bytes::from_static(b"f"),
                op: CmpOp::Greater,
                target: Target::Version(0),
                span: CompareSpan::Range(None),
            },
        ],
        success: vec![
            Op::put("b", "2"),
            Op::prefix("a", 3),
            Op::delete_prefix("p", true),
        ],
        failure: vec![Op::get("a"), Op::delete("c"), Op::append("d", "x")],
    })
}

/// `op` as the first request of client 1, stamped 1: a log command.
pub(crate) fn command(op: Op) -> Command {
    Command {
        stamp_ms: 1,
        request: Request {
            client: 1,
            seq: 1,
            read: ReadConsistency::Linearizable,
            resumed: false,
            op,
        },
    }
}

#[test]
fn commands_round_trip() {
    let ops = [
        Op::get("k"),
        Op::range("a", None, 0),
        Op::delete_range("a", Some(Bytes::from_static(b"c")), false),
        Op::delete_range(Bytes::from_static(b"\0"), None, true),
        sample_txn(),
        Op::Range {
            start: Bytes::from_static(b"a"),
            end: Some(Bytes::from_static(b"b")),
            limit: 2,
            revision: 17,
        },
        Op::Compact { revision: 9 },
        Op::rewrite("k", 0),
        Op::rewrite("k", 7),
        Op::Rewrite {
            key: Bytes::from_static(b"k"),
            value: Some(Bytes::from_static(b"v")),
            lease: None,
        },
        Op::put_leased("k", "v", 0x694d_7a2b_11c0_0001),
        Op::LeaseGrant { id: 5, ttl: 60 },
        Op::LeaseRevoke { id: -3 },
        Op::LeaseCheckpoint {
            checkpoints: vec![(5, 20), (6, 0)],
        },
        Op::MemberStarted { member: 12 },
        Op::Alarm {
            raise: true,
            member: 9,
            kind: crate::command::AlarmKind::NoSpace,
        },
        Op::Alarm {
            raise: false,
            member: 2,
            kind: crate::command::AlarmKind::Corrupt,
        },
        Op::Txn(Txn {
            compares: vec![Compare {
                key: Bytes::from_static(b"k"),
                op: CmpOp::Equal,
                target: Target::Lease(5),
                span: CompareSpan::Key,
            }],
            success: vec![],
            failure: vec![],
        }),
    ];
    for op in ops {
        let c = Command {
            stamp_ms: 1234,
            request: Request {
                client: 9,
                seq: 3,
                read: ReadConsistency::Serializable,
                resumed: true,
                op,
            },
        };
        assert_eq!(Command::decode(&c.encode()), Ok(c.clone()));
        let m = ClientMsg::Request(c.request);
        assert_eq!(ClientMsg::decode(&m.encode()), Ok(m));
    }
}

/// A read at the current revision keeps the encoding it had before the
/// history existed, so logs of earlier builds decode alike.
#[test]
fn a_range_at_the_current_revision_encodes_as_before_history() {
    let mut now = Vec::new();
    put_op(&mut now, &Op::range("a", None, 3));
    assert_eq!(now[0], 4, "the tag ranges had before");
    let mut at = Vec::new();
    let past = Op::Range {
        start: Bytes::from_static(b"a"),
        end: None,
        limit: 3,
        revision: 2,
    };
    put_op(&mut at, &past);
    assert_eq!(at[0], 7);
    assert_eq!(&at[1..at.len() - 1], &now[1..], "then the revision");
}

/// Logs written before range compares existed still decode: a
/// single-key compare's bytes did not change.
#[test]
fn a_single_key_compare_encodes_as_before_range_compares() {
    let txn = Txn {
        compares: vec![Compare::value_is("a", "1")],
        success: vec![],
        failure: vec![],
    };
    let mut out = Vec::new();
    put_txn(&mut out, &txn);
    // count 1, key "a", op Equal, target Value "1", two empty branches.
    let mut expected = Vec::new();
    put_u64(&mut expected, 1);
    put_bytes(&mut expected, b"a");
    expected.extend_from_slice(&[0, 0]);
    put_bytes(&mut expected, b"1");
    put_u64(&mut expected, 0);
    put_u64(&mut expected, 0);
    assert_eq!(out, expected);
}

#[test]
fn replies_round_trip() {
    let kv = KeyValue {
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
        create_rev: 2,
        mod_rev: 5,
        version: 3,
        lease: 77,
    };
    let outcomes = [
        Outcome::Ok {
            revision: 5,
            response: Response::Txn {
                succeeded: true,
                responses: vec![
                    Response::Get(Some(kv.clone())),
                    Response::Range {
                        kvs: vec![kv.clone()],
                        count: 4,
                    },
                    Response::Deleted(true),
                    Response::DeletedRange {
                        deleted: 2,
                        prev_kvs: vec![kv.clone(), kv.clone()],
                    },
                    Response::DeletedRange {
                        deleted: 1,
                        prev_kvs: vec![],
                    },
                    Response::Written,
                ],
            },
        },
        Outcome::WrongLeader { leader: Some(3) },
        Outcome::WrongLeader { leader: None },
        Outcome::SessionExpired,
        Outcome::Refused(Refusal::EmptyKey { role: KeyRole::Get }),
        Outcome::Refused(Refusal::EmptyKey {
            role: KeyRole::Compare,
        }),
        Outcome::Refused(Refusal::Compacted {
            requested: 3,
            compacted: 5,
        }),
        Outcome::Refused(Refusal::FutureRevision {
            requested: 9,
            current: 8,
        }),
        Outcome::Refused(Refusal::KeyNotFound),
        Outcome::Ok {
            revision: 4,
            response: Response::Compacted,
        },
    ];
    for outcome in outcomes {
        let r = Reply {
            client: 1,
            seq: 2,
            outcome,
        };
        assert_eq!(Reply::decode(&r.encode()), Ok(r.clone()));
    }
}

#[test]
fn auth_replies_round_trip() {
    let refusals = [
        crate::AuthError::RootUserNotExist,
        crate::AuthError::UserNotFound,
        crate::AuthError::PermissionDenied,
        crate::AuthError::InvalidAuthToken,
    ]
    .map(|e| Outcome::Refused(Refusal::Auth(e)));
    let authed = Outcome::Ok {
        revision: 4,
        response: Response::Authed,
    };
    for outcome in refusals.into_iter().chain([authed]) {
        let r = Reply {
            client: 1,
            seq: 2,
            outcome,
        };
        assert_eq!(Reply::decode(&r.encode()), Ok(r.clone()));
    }
}

#[test]
fn bad_input_is_refused_with_what_was_wrong() {
    let c = command(Op::put("k", "v"));
    let bytes = c.encode();
    let err = Command::decode(&bytes.slice(..bytes.len() - 1)).unwrap_err();
    assert!(err.to_string().contains("malformed log command"), "{err}");
    let mut v = bytes.to_vec();
    v[0] = 9;
    let err = Command::decode(&Bytes::from(v)).unwrap_err();
    assert_eq!(
        err,
        CodecError::Version {
            what: "log command",
            found: 9,
            oldest: 1,
            newest: 2,
        }
    );
    // An empty key decodes: the replicas refuse it when they apply it,
    // where a decoding error would stop them.
    let empty = ClientMsg::Request(Request {
        op: Op::get(""),
        ..c.request.clone()
    });
    assert_eq!(ClientMsg::decode(&empty.encode()), Ok(empty));
    // Transactions nest up to MAX_TXN_DEPTH deep, no deeper.
    let nest = |depth: usize| {
        (1..depth).fold(sample_txn(), |inner, _| {
            let Op::Txn(mut t) = sample_txn() else {
                unreachable!()
            };
            t.failure.push(inner);
            Op::Txn(t)
        })
    };
    let deepest = ClientMsg::Request(Request {
        op: nest(MAX_TXN_DEPTH),
        ..c.request.clone()
    });
    assert_eq!(ClientMsg::decode(&deepest.encode()), Ok(deepest));
    let too_deep = ClientMsg::Request(Request {
        op: nest(MAX_TXN_DEPTH + 1),
        ..c.request
    });
    assert_eq!(
        ClientMsg::decode(&too_deep.encode()),
        Err(CodecError::TxnTooDeep {
            what: "client message"
        })
    );
}

/// An operation on behalf of a user counts as a level of nesting, so a
/// chain of them cannot recurse without end either.
#[test]
fn users_nest_no_deeper_than_transactions() {
    let nest = |depth: usize| {
        (0..depth).fold(Op::get("k"), |op, _| Op::AsUser {
            user: "u".into(),
            op: Box::new(op),
        })
    };
    let deepest = command(nest(MAX_TXN_DEPTH));
    assert_eq!(Command::decode(&deepest.encode()), Ok(deepest));
    let too_deep = command(nest(MAX_TXN_DEPTH + 1));
    assert_eq!(
        Command::decode(&too_deep.encode()),
        Err(CodecError::TxnTooDeep {
            what: "log command"
        })
    );
}

#[test]
fn old_encodings_still_decode_and_unknown_tags_are_named() {
    // A delete written by the first release: version 1, stamp 1,
    // client 1, seq 1, linearizable, not resumed, op tag 3, key "k".
    let old = Bytes::from_static(b"\x01\x01\x01\x01\x00\x00\x03\x01k");
    let c = Command::decode(&old).unwrap();
    assert_eq!(c.request.op, Op::delete("k"));
    // The same entry with an op tag no build knows.
    let mut v = old.to_vec();
    v[6] = 0x7f;
    let err = Command::decode(&Bytes::from(v)).unwrap_err();
    let CodecError::Malformed { what, source } = &err else {
        panic!("not malformed: {err:?}")
    };
    assert_eq!(*what, "log command");
    assert!(
        matches!(
            source,
            DecodeError::BadTag {
                what: "op",
                tag: 0x7f,
                offset: 6
            }
        ),
        "{err}"
    );
    let r = Reply {
        client: 1,
        seq: 1,
        outcome: Outcome::Ok {
            revision: 1,
            response: Response::Written,
        },
    };
    let mut v = r.encode().to_vec();
    let last = v.len() - 1;
    v[last] = 0x7e;
    let err = Reply::decode(&Bytes::from(v)).unwrap_err();
    assert!(err.to_string().contains("reply"), "{err}");
    assert!(
        matches!(
            err,
            CodecError::Malformed {
                source: DecodeError::BadTag {
                    what: "response",
                    tag: 0x7e,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn lease_and_alarm_outcomes_round_trip() {
    let outcomes = [
        Outcome::Refused(Refusal::NoSpace),
        Outcome::Refused(Refusal::Corrupt),
        Outcome::Refused(Refusal::LeaseNotFound { id: -2 }),
        Outcome::Refused(Refusal::LeaseExists { id: 3 }),
        Outcome::Ok {
            revision: 4,
            response: Response::Alarmed,
        },
        Outcome::Ok {
            revision: 4,
            response: Response::Leased,
        },
        Outcome::Ok {
            revision: 4,
            response: Response::Started,
        },
    ];
    for outcome in outcomes {
        let r = Reply {
            client: 1,
            seq: 2,
            outcome,
        };
        assert_eq!(Reply::decode(&r.encode()), Ok(r));
    }
}

/// A rewrite that keeps the value and drops the lease keeps the encoding
/// it had before leases (tag 9, the key alone), which older builds read.
#[test]
fn a_plain_rewrite_keeps_its_first_encoding() {
    let len = |op: Op| {
        let c = command(op);
        c.encode().len()
    };
    let general = Op::Rewrite {
        key: Bytes::from_static(b"k"),
        value: None,
        lease: Some(1),
    };
    assert_eq!(len(Op::rewrite("k", 0)) + 3, len(general));
}
