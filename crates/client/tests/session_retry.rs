//! The client side of exactly-once sessions against scripted servers on
//! loopback: a write whose outcome is unknown is re-sent with the same
//! (client id, seq) to the next endpoint until one answers; an expired
//! session is reported and replaced; a write no one answers is reported as
//! indeterminate at the deadline; a refusal is not retried.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_client::Client;
use flotilla_client::session::{Session, SessionError, SessionOptions};
use flotilla_proto::kv::v1 as kvpb;
use flotilla_proto::kv::v1::kv_server::{Kv, KvServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

/// What a scripted server saw: (server, client id, seq, resumed).
type Log = Arc<Mutex<Vec<(usize, u64, u64, bool)>>>;

/// A server that answers from a shared script (`None`: success).
#[derive(Clone)]
struct Scripted {
    me: usize,
    log: Log,
    script: Arc<Mutex<VecDeque<Option<Status>>>>,
}

#[tonic::async_trait]
impl Kv for Scripted {
    async fn write(
        &self,
        request: Request<kvpb::SessionWrite>,
    ) -> Result<Response<kvpb::SessionWriteResponse>, Status> {
        let w = request.into_inner();
        self.log
            .lock()
            .unwrap()
            .push((self.me, w.client_id, w.seq, w.resumed));
        let next = self.script.lock().unwrap().pop_front().flatten();
        if let Some(status) = next {
            return Err(status);
        }
        Ok(Response::new(kvpb::SessionWriteResponse {
            response: Some(kvpb::session_write_response::Response::Append(
                kvpb::AppendResponse { header: None },
            )),
        }))
    }
}

/// Two scripted servers sharing `script`; a client over both.
async fn servers(script: Vec<Option<Status>>) -> (Client, Log) {
    let log: Log = Arc::default();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let mut endpoints = Vec::new();
    for me in 0..2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        endpoints.push(listener.local_addr().unwrap().to_string());
        let svc = Scripted {
            me,
            log: Arc::clone(&log),
            script: Arc::clone(&script),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(KvServer::new(svc))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
    }
    let client = Client::new(&endpoints, Duration::from_secs(2)).unwrap();
    (client, log)
}

fn opts(deadline_ms: u64) -> SessionOptions {
    SessionOptions {
        deadline: Duration::from_millis(deadline_ms),
        backoff: Duration::from_millis(5),
    }
}

#[tokio::test]
async fn unknown_outcomes_are_resent_with_the_same_seq_to_the_next_endpoint() {
    let unavailable = || Some(Status::unavailable("leader changed"));
    let timed_out = Some(Status::deadline_exceeded("etcdserver: request timed out"));
    let (client, log) = servers(vec![unavailable(), timed_out, unavailable()]).await;
    let mut s = Session::new(&client, opts(10_000)).starting_at(0);
    s.append("k", "x").await.unwrap();
    s.append("k", "y").await.unwrap();
    let log = log.lock().unwrap().clone();
    let id = s.id();
    assert_eq!(
        log,
        vec![
            (0, id, 1, false),
            (1, id, 1, false),
            (0, id, 1, false),
            (1, id, 1, false),
            // Answered: the next write is numbered 2, from the member that
            // answered, and says the session was used before.
            (1, id, 2, true),
        ]
    );
    assert_eq!(s.resent(), 3);
}

#[tokio::test]
async fn an_expired_session_is_reported_and_replaced() {
    let expired = flotilla_proto::signal::status(
        Code::FailedPrecondition,
        "flotilla: the client session expired",
        flotilla_proto::signal::Kind::SessionExpired,
    );
    let (client, log) = servers(vec![None, Some(expired)]).await;
    let mut s = Session::new(&client, opts(10_000)).starting_at(0);
    let first = s.id();
    s.append("k", "x").await.unwrap();
    let err = s.append("k", "y").await.unwrap_err();
    assert!(
        matches!(err, SessionError::SessionExpired { client, seq: 2 } if client == first),
        "{err}"
    );
    s.append("k", "z").await.unwrap();
    let last = *log.lock().unwrap().last().unwrap();
    assert_ne!(last.1, first, "a new client id");
    assert_eq!((last.2, last.3), (1, false), "a new session starts at 1");
}

#[tokio::test]
async fn a_write_no_one_answers_is_indeterminate_at_the_deadline() {
    let (client, log) = servers(vec![Some(Status::unavailable("down")); 10_000]).await;
    let mut s = Session::new(&client, opts(300));
    let err = s.append("k", "x").await.unwrap_err();
    let SessionError::Indeterminate { seq, attempts, .. } = err else {
        panic!("not indeterminate: {err}")
    };
    assert_eq!(seq, 1);
    assert!(attempts >= 2, "both endpoints tried: {attempts}");
    let log = log.lock().unwrap();
    assert!(log.iter().all(|&(_, _, seq, _)| seq == 1), "always seq 1");
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let (client, log) = servers(vec![Some(Status::invalid_argument("bad key"))]).await;
    let mut s = Session::new(&client, opts(10_000));
    let err = s.append("k", "x").await.unwrap_err();
    assert!(matches!(&err, SessionError::Server(st) if st.code() == Code::InvalidArgument));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_write_no_member_accepts_fails_at_once_as_not_applied() {
    let ports: Vec<String> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        })
        .collect();
    // The listeners are dropped: every connection is refused.
    let client = Client::new(&ports, Duration::from_secs(2)).unwrap();
    let mut s = Session::new(&client, opts(60_000));
    let err = s.append("k", "x").await.unwrap_err();
    assert!(
        matches!(err, SessionError::Unreachable { seq: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not applied"), "{err}");
}
