//! gRPC's health protocol on a 3-member cluster, as Kubernetes' gRPC
//! probes call it: every member is SERVING once a leader is elected;
//! an unknown service is NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch);
//! a member cut off from its quorum (the other two SIGKILLed) turns
//! NOT_SERVING on its open Watch, without a new call. And etcd's HTTP/1.1
//! endpoints on the same port (`/health`, `/version`, `/metrics`, 404
//! elsewhere), as curl and Kubernetes' HTTP probes call them: `/health`
//! turns 503 on a member cut off from its quorum, and `flotilla health`
//! (the images' health check) exits 0 while every member is healthy,
//! else 1, naming what each unhealthy one answered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::time::Duration;

use cluster_common::Cluster;
use flotilla_proto::health::v1::HealthCheckRequest;
use flotilla_proto::health::v1::health_check_response::ServingStatus;
use flotilla_proto::health::v1::health_client::HealthClient;
use flotilla_testkit::http::get as http_get;
use tonic::transport::Channel;

async fn client(endpoint: &str) -> HealthClient<Channel> {
    HealthClient::new(cluster_common::channel(endpoint).await)
}

fn ask(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_string(),
    }
}

#[test]
fn members_serve_while_they_know_a_leader() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start("health", 3);
    let leader = cluster.wait_leader(&rt);
    let survivor = (leader + 1) % 3;
    let mut watch = rt.block_on(async {
        for ep in &cluster.endpoints {
            let mut h = client(ep).await;
            for service in ["", "etcdserverpb.KV"] {
                let r = h.check(ask(service)).await.unwrap().into_inner();
                assert_eq!(r.status(), ServingStatus::Serving, "{ep} {service:?}");
            }
            let unknown = h.check(ask("no.such.Service")).await.unwrap_err();
            assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
        }
        let mut h = client(&cluster.endpoints[survivor]).await;
        let mut unknown = h.watch(ask("no.such.Service")).await.unwrap().into_inner();
        let first = unknown.message().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::ServiceUnknown);
        let mut watch = h.watch(ask("")).await.unwrap().into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving);
        watch
    });
    for i in 0..3 {
        if i != survivor {
            cluster.kill(i);
        }
    }
    // The survivor stops knowing a leader once its election timeout
    // passes without one (it campaigns and cannot win).
    rt.block_on(async {
        let next = tokio::time::timeout(Duration::from_secs(20), watch.message()).await;
        let next = next
            .expect("no status change within 20 s")
            .unwrap()
            .unwrap();
        assert_eq!(next.status(), ServingStatus::NotServing);
        let mut h = client(&cluster.endpoints[survivor]).await;
        let r = h.check(ask("")).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::NotServing);
    });
}

/// `flotilla health --endpoints ...`, the containers' health check: its
/// exit code, stdout and stderr.
fn health_command(endpoints: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["health", "--endpoints", &endpoints.join(",")])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn etcd_s_http_endpoints_share_the_client_port() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start("http", 3);
    let leader = cluster.wait_leader(&rt);
    let survivor = cluster.endpoints[(leader + 1) % 3].clone();
    for ep in &cluster.endpoints {
        assert_eq!(
            http_get(ep, "/health"),
            (200, r#"{"health":"true"}"#.to_string())
        );
    }
    let endpoints: Vec<&str> = cluster.endpoints.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = health_command(&endpoints);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for ep in &endpoints {
        assert!(
            stdout.contains(&format!(r#"{ep} is healthy: {{"health":"true"}}"#)),
            "{stdout}"
        );
    }
    let (code, version) = http_get(&survivor, "/version");
    assert_eq!(code, 200);
    assert!(
        version.starts_with(r#"{"etcdserver":"3.4.0-flotilla."#),
        "{version}"
    );
    assert!(version.ends_with(r#","etcdcluster":"3.4.0"}"#), "{version}");
    let (code, metrics) = http_get(&survivor, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("# TYPE flotilla_proposals_total counter"),
        "{metrics}"
    );
    console_series(&metrics);
    assert_eq!(http_get(&survivor, "/v2/keys").0, 404);
    for i in 0..3 {
        if cluster.endpoints[i] != survivor {
            cluster.kill(i);
        }
    }
    flotilla_testkit::wait_for("/health to turn 503", Duration::from_secs(20), || {
        let (code, body) = http_get(&survivor, "/health");
        (code == 503 && body == r#"{"health":"false"}"#).then_some(())
    });
    let (code, _, stderr) = health_command(&[&survivor, &cluster.endpoints[leader]]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            r#"{survivor} is unhealthy: HTTP 503: {{"health":"false"}}"#
        )),
        "{stderr}"
    );
    let killed = format!(
        "{} is unhealthy: cannot connect to",
        cluster.endpoints[leader]
    );
    assert!(stderr.contains(&killed), "{stderr}");
    // Status lists the missing leader among its errors, as etcd's does,
    // once the survivor stops knowing one.
    flotilla_testkit::wait_for("status to say no leader", Duration::from_secs(20), || {
        let (code, status) =
            flotilla_testkit::http::post(&survivor, "/v3/maintenance/status", "{}");
        assert_eq!(code, 200, "{status}");
        status
            .contains(r#""errors":["etcdserver: no leader"]"#)
            .then_some(())
    });
}

/// The series the console charts beyond the counters: the proposals in
/// flight, and bytes sent to each of the two other members (a series for
/// each, and at least the answers to the leader's heartbeats by now: a
/// follower sends the other follower nothing).
fn console_series(metrics: &str) {
    let gauge = "# TYPE flotilla_proposals_in_flight gauge\nflotilla_proposals_in_flight ";
    assert!(metrics.contains(gauge), "{metrics}");
    let sent: Vec<u64> = metrics
        .lines()
        .filter(|l| l.starts_with("flotilla_peer_sent_bytes_total{peer="))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(sent.len() == 2 && sent.iter().any(|&b| b > 0), "{metrics}");
}
