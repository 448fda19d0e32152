//! Fuzzes what a peer can send: the input is a sequence of length-prefixed
//! frames, each decoded as a `Message` (and as an `Entry` and a
//! `HardState`, the other encodings a peer's bytes reach). A message that
//! decodes must encode back to the same value, and is stepped, re-addressed
//! to node 1, into a leader and a follower of a 3-node group; between
//! frames the nodes tick and drain their Readys. Nothing may panic, and the
//! core's invariants must hold throughout.

#![no_main]

use bytes::Bytes;
use flotilla_raft::message::MessageBody;
use flotilla_raft::{
    Config, Decode, Encode, Entry, HardState, InitialState, MemStorage, Message, NodeId, RawNode,
    Term, persist,
};
use libfuzzer_sys::fuzz_target;

fn drain(node: &mut RawNode, storage: &mut MemStorage) {
    while node.has_ready() {
        let rd = node.ready();
        let Ok(()) = persist(storage, rd.writes());
        node.advance(&rd);
        node.check_invariants();
    }
}

fn nodes() -> [(RawNode, MemStorage); 2] {
    let cfg = || {
        let mut c = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
        c.pre_vote = false;
        c
    };
    let follower = RawNode::new(cfg(), InitialState::default()).expect("valid config");
    let mut leader = RawNode::new(cfg(), InitialState::default()).expect("valid config");
    let mut storage = MemStorage::new();
    leader.campaign();
    drain(&mut leader, &mut storage);
    let granted = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        body: MessageBody::VoteResp {
            pre: false,
            granted: true,
        },
    };
    leader.step(granted).expect("vote");
    drain(&mut leader, &mut storage);
    for _ in 0..3 {
        leader.propose(Bytes::from_static(b"x")).expect("leader");
    }
    drain(&mut leader, &mut storage);
    [(leader, storage), (follower, MemStorage::new())]
}

fuzz_target!(|data: &[u8]| {
    let mut nodes = nodes();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        rest = tail;
        let bytes = Bytes::copy_from_slice(frame);
        let _ = Entry::from_bytes(&bytes);
        let _ = HardState::from_bytes(&bytes);
        let Ok(mut m) = Message::from_bytes(&bytes) else {
            continue;
        };
        assert_eq!(Message::from_bytes(&m.to_bytes()).as_ref(), Ok(&m));
        m.to = NodeId(1);
        for (node, storage) in &mut nodes {
            let _ = node.step(m.clone());
            node.check_invariants();
            if len % 3 == 0 {
                node.tick();
            }
            drain(node, storage);
        }
    }
});
