//! The KV server as a simulator [`Service`]: decodes client messages,
//! drives [`KvServer`], encodes its replies. Garbled client messages are
//! dropped (a real server would log them).

use std::any::Any;

use bytes::Bytes;
use flotilla_kv::{ClientMsg, KvServer, Outgoing, ServerConfig};
use flotilla_raft::{LogIndex, RawNode, Ready};
use flotilla_sim::{Outbox, Service, ServiceFactory};

/// One node's KV server in the simulator.
#[derive(Debug)]
pub struct KvService {
    /// The server.
    pub server: KvServer,
}

fn push(out: &mut Outbox, replies: Vec<Outgoing>) {
    out.extend(replies.into_iter().map(|o| (o.to, o.reply.encode())));
}

impl Service for KvService {
    fn on_ready(&mut self, raft: &RawNode, rd: &Ready, out: &mut Outbox) -> Result<(), String> {
        let replies = self.server.on_ready(raft, rd).map_err(|e| e.to_string())?;
        push(out, replies);
        Ok(())
    }

    fn on_client(
        &mut self,
        raft: &mut RawNode,
        from: u64,
        msg: &Bytes,
        now_ns: u64,
        out: &mut Outbox,
    ) {
        let Ok(ClientMsg::Request(req)) = ClientMsg::decode(msg) else {
            return;
        };
        let replies = self.server.on_request(raft, from, req, now_ns / 1_000_000);
        push(out, replies);
    }

    fn snapshot_if_due(&mut self, raft: &RawNode) -> Option<(LogIndex, Bytes)> {
        self.server.snapshot_if_due(raft.status().log_bytes)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Builds each node's KV server with `cfg`.
pub fn factory(cfg: ServerConfig) -> ServiceFactory {
    std::rc::Rc::new(move |_id, snap| {
        let server = KvServer::new(cfg, snap).map_err(|e| e.to_string())?;
        Ok(Box::new(KvService { server }) as Box<dyn Service>)
    })
}
