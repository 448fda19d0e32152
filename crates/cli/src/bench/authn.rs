//! `flotilla bench authenticate`: whether Authenticate's time tells a
//! caller anything beyond bcrypt's verdict (etcd's and issue 23's "no
//! timing oracle"). It times three kinds of call on one connection to one
//! member, interleaved in a shuffled order each round so that drift and
//! caches hit all kinds alike: the right password, a wrong password of
//! the same user, and a user that does not exist. A server that skipped
//! bcrypt for a missing user would answer that kind in a fraction of the
//! time; one that compared passwords byte by byte would not show at this
//! resolution at all, since bcrypt dominates. Prints each kind's
//! percentiles and the medians' ratios.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::auth_client::AuthClient;

use crate::cluster::{EndpointArgs, runtime};

/// `flotilla bench authenticate` arguments.
#[derive(Debug, Args)]
pub struct AuthnBenchArgs {
    /// The member to ask (the first endpoint) and the known user, given
    /// as `--user NAME:PASSWORD` (or `--user NAME --password P`).
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// Calls of each kind.
    #[arg(long, default_value_t = 40)]
    rounds: usize,
}

/// The three kinds of call, in the order printed.
const KINDS: [&str; 3] = ["right password", "wrong password", "missing user"];

/// Runs `flotilla bench authenticate`.
pub fn main(args: AuthnBenchArgs) -> anyhow::Result<ExitCode> {
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let Some(known) = args.endpoints.credentials()? else {
        bail!("give the known user as --user NAME:PASSWORD");
    };
    let endpoints = args.endpoints.resolve();
    let tls = args.endpoints.tls(&endpoints)?;
    let rt = runtime()?;
    let times = rt.block_on(async {
        // No token: Authenticate needs none.
        let none = flotilla_client::auth::Token::default();
        let conns = super::connect(&endpoints[..1], 1, (tls.as_ref(), &none), None);
        let conn = conns.await?.remove(0);
        let mut auth = AuthClient::new(conn);
        let requests = [
            (known.user.clone(), known.password().to_string()),
            (known.user.clone(), format!("{}-not", known.password())),
            (
                format!("{}-missing", known.user),
                known.password().to_string(),
            ),
        ];
        time_rounds(&mut auth, &requests, args.rounds).await
    })?;
    report(&endpoints[0], &times);
    Ok(ExitCode::SUCCESS)
}

/// Each kind's call times over `rounds` rounds, each round's kinds in an
/// order of its own.
async fn time_rounds(
    auth: &mut AuthClient<flotilla_client::Conn>,
    requests: &[(String, String); 3],
    rounds: usize,
) -> anyhow::Result<[Vec<Duration>; 3]> {
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..rounds {
        let mut order = [0usize, 1, 2];
        for i in (1..3).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for kind in order {
            let (name, password) = &requests[kind];
            let request = pb::AuthenticateRequest {
                name: name.clone(),
                password: password.clone(),
            };
            let t0 = Instant::now();
            let answer = auth.authenticate(request).await;
            times[kind].push(t0.elapsed());
            check(kind, answer.map(|_| ()))?;
        }
    }
    Ok(times)
}

/// The right password must pass and the others fail as a bad password.
fn check(kind: usize, answer: Result<(), tonic::Status>) -> anyhow::Result<()> {
    match (kind, answer) {
        (0, Ok(())) => Ok(()),
        (0, Err(s)) => Err(s).context("the known user's password was refused"),
        (_, Err(s)) if s.message().contains("authentication failed") => Ok(()),
        (_, Ok(())) => bail!("a {} was accepted", KINDS[kind]),
        (_, Err(s)) => {
            Err(s).with_context(|| format!("a {}: not refused as a bad password", KINDS[kind]))
        }
    }
}

/// The `q` quantile of sorted `t`, in ms.
fn quantile_ms(t: &[Duration], q: f64) -> f64 {
    let i = ((t.len() - 1) as f64 * q).round() as usize;
    t[i].as_secs_f64() * 1000.0
}

fn report(endpoint: &str, times: &[Vec<Duration>; 3]) {
    println!("endpoint={endpoint} calls_per_kind={}", times[0].len());
    let mut medians = [0.0; 3];
    for (kind, t) in times.iter().enumerate() {
        let mut t = t.clone();
        t.sort();
        medians[kind] = quantile_ms(&t, 0.5);
        println!(
            "{:<15} p10={:.2}ms p50={:.2}ms p90={:.2}ms",
            KINDS[kind],
            quantile_ms(&t, 0.1),
            medians[kind],
            quantile_ms(&t, 0.9)
        );
    }
    println!(
        "wrong_over_right={:.3} missing_over_wrong={:.3}",
        medians[1] / medians[0],
        medians[2] / medians[1]
    );
}
