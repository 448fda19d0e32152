//! The client's credentials against scripted servers on loopback: it
//! authenticates once before its first call and every call carries the
//! token; a call the server refuses for its token alone is made once
//! more after a new authentication (and only once); any other refusal is
//! returned as it is, the call sent once; a refused password stops the
//! client before any call. A session's write refused for its token is
//! resent once with a new one. And, with no credentials, a write moves past
//! an endpoint that refuses connections (it was never sent there).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_client::client::ClientError;
use flotilla_client::session::{Session, SessionError, SessionOptions};
use flotilla_client::{Client, Credentials};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::auth_server::{Auth, AuthServer};
use flotilla_proto::etcdserverpb::kv_server::{Kv, KvServer};
use flotilla_proto::kv::v1 as kvpb;
use flotilla_proto::kv::v1::kv_server::{Kv as SessionKv, KvServer as SessionKvServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

/// What the server saw: `auth N` for the N-th Authenticate, `put T` for
/// a Put carrying token T (`-` for none).
type Log = Arc<Mutex<Vec<String>>>;

#[derive(Clone)]
struct Fake {
    log: Log,
    /// Each Put's answer, in turn (`None`: success; past the end too).
    puts: Arc<Mutex<VecDeque<Option<Status>>>>,
}

impl Fake {
    fn note(&self, what: String) {
        self.log.lock().unwrap().push(what);
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not scripted"))
}

#[tonic::async_trait]
impl Kv for Fake {
    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let token = r
            .metadata()
            .get("token")
            .map(|t| t.to_str().unwrap().to_owned());
        self.note(format!("put {}", token.as_deref().unwrap_or("-")));
        match self.puts.lock().unwrap().pop_front().flatten() {
            Some(refusal) => Err(refusal),
            None => Ok(Response::new(pb::PutResponse::default())),
        }
    }
    async fn range(
        &self,
        _: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        unimplemented()
    }
    async fn delete_range(
        &self,
        _: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        unimplemented()
    }
    async fn txn(&self, _: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        unimplemented()
    }
    async fn compact(
        &self,
        _: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        unimplemented()
    }
}

/// Flotilla's session service: each write logged as `write T seq`, answered
/// from the same script as Puts.
#[tonic::async_trait]
impl SessionKv for Fake {
    async fn write(
        &self,
        r: Request<kvpb::SessionWrite>,
    ) -> Result<Response<kvpb::SessionWriteResponse>, Status> {
        let token = r
            .metadata()
            .get("token")
            .map(|t| t.to_str().unwrap().to_owned());
        let seq = r.get_ref().seq;
        self.note(format!("write {} {seq}", token.as_deref().unwrap_or("-")));
        if let Some(refusal) = self.puts.lock().unwrap().pop_front().flatten() {
            return Err(refusal);
        }
        Ok(Response::new(kvpb::SessionWriteResponse {
            response: Some(kvpb::session_write_response::Response::Append(
                kvpb::AppendResponse { header: None },
            )),
        }))
    }
}

/// The Auth service: Authenticate answers `token-N` to alice with
/// `pw`, and refuses anyone else; the rest is not scripted.
macro_rules! fake_auth {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl Auth for Fake {
            async fn authenticate(
                &self,
                r: Request<pb::AuthenticateRequest>,
            ) -> Result<Response<pb::AuthenticateResponse>, Status> {
                let r = r.into_inner();
                let n = self.log.lock().unwrap().iter().filter(|l| l.starts_with("auth")).count() + 1;
                self.note(format!("auth {n}"));
                if (r.name.as_str(), r.password.as_str()) != ("alice", "pw") {
                    return Err(Status::invalid_argument(
                        "etcdserver: authentication failed, invalid user ID or password",
                    ));
                }
                Ok(Response::new(pb::AuthenticateResponse {
                    header: None,
                    token: format!("token-{n}"),
                }))
            }
            $(async fn $name(&self, _: Request<pb::$req>) -> Result<Response<pb::$resp>, Status> {
                unimplemented()
            })*
        }
    };
}

fake_auth! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse;
    auth_disable(AuthDisableRequest) -> AuthDisableResponse;
    auth_status(AuthStatusRequest) -> AuthStatusResponse;
    user_add(AuthUserAddRequest) -> AuthUserAddResponse;
    user_get(AuthUserGetRequest) -> AuthUserGetResponse;
    user_list(AuthUserListRequest) -> AuthUserListResponse;
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
    user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
    role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
    role_list(AuthRoleListRequest) -> AuthRoleListResponse;
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
    role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse;
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;
}

/// A scripted server answering Puts with `puts`; its endpoint and log.
async fn serve(puts: Vec<Option<Status>>) -> (String, Log) {
    let log: Log = Arc::default();
    let fake = Fake {
        log: Arc::clone(&log),
        puts: Arc::new(Mutex::new(VecDeque::from(puts))),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KvServer::new(fake.clone()))
            .add_service(SessionKvServer::new(fake.clone()))
            .add_service(AuthServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (endpoint, log)
}

/// A scripted server answering Puts with `puts`, and a client of it as
/// `credentials`.
async fn server(puts: Vec<Option<Status>>, credentials: Option<(&str, &str)>) -> (Client, Log) {
    let (endpoint, log) = serve(puts).await;
    let mut client = Client::new(&[endpoint], Duration::from_secs(2)).unwrap();
    if let Some((user, password)) = credentials {
        client = client.with_credentials(Credentials::new(user, password));
    }
    (client, log)
}

fn put() -> pb::PutRequest {
    pb::PutRequest {
        key: "k".into(),
        value: "v".into(),
        ..Default::default()
    }
}

fn invalid_token() -> Option<Status> {
    Some(Status::unauthenticated("etcdserver: invalid auth token"))
}

fn seen(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test]
async fn without_credentials_calls_carry_no_token_and_a_refusal_is_sent_once() {
    let denied = Some(Status::permission_denied("etcdserver: permission denied"));
    let (client, log) = server(vec![None, denied, invalid_token()], None).await;
    client.put(put()).await.unwrap();
    let e = client.put(put()).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Server(s) if s.code() == Code::PermissionDenied),
        "{e}"
    );
    // Nobody to authenticate as: an invalid token is an answer too.
    assert!(client.put(put()).await.is_err());
    assert_eq!(seen(&log), ["put -", "put -", "put -"]);
}

#[tokio::test]
async fn calls_carry_the_token_and_a_refused_token_is_replaced_once() {
    let denied = Some(Status::permission_denied("etcdserver: permission denied"));
    let script = vec![
        None,
        invalid_token(),
        None,
        denied,
        invalid_token(),
        invalid_token(),
    ];
    let (client, log) = server(script, Some(("alice", "pw"))).await;
    client.put(put()).await.unwrap();
    client.put(put()).await.unwrap();
    let e = client.put(put()).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Server(s) if s.code() == Code::PermissionDenied),
        "{e}"
    );
    let e = client.put(put()).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Server(s) if s.code() == Code::Unauthenticated),
        "{e}"
    );
    let expected = [
        "auth 1",
        "put token-1", // the first call authenticates first
        "put token-1",
        "auth 2",
        "put token-2", // refused token: once more
        "put token-2", // another refusal: returned, not resent
        "put token-2",
        "auth 3",
        "put token-3", // refused twice: returned
    ];
    assert_eq!(seen(&log), expected);
}

// A session's writes carry the client's token; one refused for its token
// alone is sent again, with the same seq, after the client authenticates
// again (it was not applied), once per write.
#[tokio::test]
async fn a_session_write_refused_for_its_token_is_resent_once_with_a_new_one() {
    let script = vec![
        None,
        invalid_token(),
        None,
        invalid_token(),
        invalid_token(),
    ];
    let (client, log) = server(script, Some(("alice", "pw"))).await;
    client.authenticate().await.unwrap();
    let opts = SessionOptions {
        deadline: Duration::from_secs(5),
        backoff: Duration::from_millis(5),
    };
    let mut session = Session::new(&client, opts);
    session.append("k", "x").await.unwrap();
    session.append("k", "y").await.unwrap();
    let e = session.append("k", "z").await.unwrap_err();
    assert!(
        matches!(&e, SessionError::Server(s) if s.code() == Code::Unauthenticated),
        "{e}"
    );
    let expected = [
        "auth 1",
        "write token-1 1",
        "write token-1 2",
        "auth 2",
        "write token-2 2", // the same write, the new token
        "write token-2 3",
        "auth 3",
        "write token-3 3", // refused again: an answer
    ];
    assert_eq!(seen(&log), expected);
    // The client shares the session's new token.
    client.put(put()).await.unwrap();
    assert_eq!(seen(&log).last().map(String::as_str), Some("put token-3"));
}

#[tokio::test]
async fn a_refused_password_stops_the_client_before_any_call() {
    let (client, log) = server(Vec::new(), Some(("alice", "wrong"))).await;
    let e = client.put(put()).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Login { user, .. } if user == "alice"),
        "{e}"
    );
    assert!(e.to_string().contains("authentication failed"), "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");
    assert_eq!(seen(&log), ["auth 1"]);
}

/// A port nothing listens on: connections to it are refused.
async fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn a_write_moves_past_an_endpoint_that_refuses_connections() {
    let (live, log) = serve(Vec::new()).await;
    let endpoints = [dead_endpoint().await, live, dead_endpoint().await];
    let client = Client::new(&endpoints, Duration::from_secs(2)).unwrap();
    client.put(put()).await.unwrap();
    // The next call starts where the last one was answered.
    client.put(put()).await.unwrap();
    assert_eq!(seen(&log), ["put -", "put -"]);
}
