//! The web console in a real browser: Debian's headless Chromium loads
//! `GET /` of a member of a 3-member cluster of the real binary, runs the
//! page's scripts (which poll `/api/cluster`), and dumps the DOM. The
//! page shows three members up and exactly one leader, the one the
//! members agree on; after the leader is killed (SIGKILL, by PID) the
//! page, still served by a survivor, marks the killed member down and
//! the leader marker on the new leader. The page must log no JavaScript
//! error (neither in its own `#errors` element nor on Chromium's
//! console). Under writes, the chart's commit index climbs within one
//! page load, and the page of the member taking the writes charts its own
//! metrics (Puts and fsyncs); a screenshot is then saved to
//! `target/tmp/console.png`.
//!
//! Skipped, with a message, where `chromium` is not installed (Debian
//! package `chromium`; `.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster_common::Cluster;

/// Whether Chromium is missing (and the test skipped).
fn chromium_missing() -> bool {
    let missing = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err();
    if missing {
        eprintln!("SKIPPED: chromium is not installed (Debian package chromium)");
    }
    missing
}

/// Headless Chromium on `url` with `args`, its own profile in `profile`;
/// its stdout and stderr. The page's timers run in virtual time, for up
/// to 5 s of it, while network requests hold virtual time still.
fn chromium(profile: &Path, url: &str, args: &[&str]) -> (String, String) {
    let out = Command::new("timeout")
        .arg("60")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One member's row as the page drew it.
#[derive(Debug)]
struct Row {
    id: u64,
    up: bool,
    leader: bool,
}

/// The value of attribute `name` in a tag's text.
fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
    let start = tag
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + name.len()
        + 2;
    let len = tag[start..].find('"').unwrap();
    &tag[start..start + len]
}

/// The members' rows in a DOM dump.
fn rows(dom: &str) -> Vec<Row> {
    dom.split("<tr class=\"member")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            Row {
                id: attr(tag, "data-id").parse().unwrap(),
                up: attr(tag, "data-state") == "up",
                leader: attr(tag, "data-leader") == "yes",
            }
        })
        .collect()
}

/// The page's DOM once it shows `want` (checked on its rows), with no
/// JavaScript error, polled for with a deadline.
fn dom_showing(profile: &Path, url: &str, what: &str, want: impl Fn(&[Row]) -> bool) -> String {
    let mut last = String::new();
    let found = flotilla_testkit::wait_until(Duration::from_secs(60), || {
        let (dom, log) = chromium(profile, url, &["--dump-dom"]);
        assert!(
            !log.contains("Uncaught"),
            "the page logged an error:\n{log}"
        );
        assert!(
            dom.contains("<pre id=\"errors\"></pre>"),
            "the page reported errors:\n{dom}"
        );
        let ok = want(&rows(&dom));
        last = dom;
        ok.then_some(())
    });
    assert!(found.is_some(), "the console never showed {what}:\n{last}");
    last
}

#[test]
fn the_console_follows_the_leader_in_a_real_browser() {
    if chromium_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start("console", 3);
    let leader = cluster.wait_leader(&rt);
    let viewer = (leader + 1) % 3;
    let url = format!("http://{}/", cluster.endpoints[viewer]);
    let profile = cluster.scratch.path.join("chromium");
    let id = |i: usize| i as u64 + 1;

    let dom = dom_showing(&profile, &url, "3 members and the leader", |rows| {
        rows.len() == 3
            && rows.iter().all(|r| r.up)
            && rows.iter().filter(|r| r.leader).count() == 1
            && rows.iter().any(|r| r.leader && r.id == id(leader))
    });
    assert!(dom.contains("<polyline id=\"line\" points=\""), "{dom}");
    // Under writes, the chart's commit index climbs within one page load.
    let writing = write_in_background(&rt, &cluster);
    let dom = wait_for_chart_to_climb(&profile, &url);
    assert!(dom.contains("commits/s"), "{dom}");
    screenshot(&profile, &url);
    metrics_move(&profile, &format!("http://{}/", cluster.endpoints[0]));
    writing.abort();

    cluster.kill(leader);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = cluster.wait_leader_of(&rt, &survivors);
    assert_ne!(new_leader, leader);
    dom_showing(&profile, &url, "the killed leader down", |rows| {
        rows.len() == 3
            && rows.iter().filter(|r| r.leader).count() == 1
            && rows.iter().any(|r| r.leader && r.id == id(new_leader))
            && rows
                .iter()
                .any(|r| !r.up && !r.leader && r.id == id(leader))
            && rows.iter().filter(|r| r.up).count() == 2
    });
}

/// Puts keys through the cluster until aborted.
fn write_in_background(
    rt: &tokio::runtime::Runtime,
    cluster: &Cluster,
) -> tokio::task::JoinHandle<()> {
    let client = {
        let _g = rt.enter();
        cluster.client()
    };
    rt.spawn(async move {
        for i in 0u64.. {
            let put = flotilla_proto::etcdserverpb::PutRequest {
                key: format!("console/{}", i % 100).into(),
                value: i.to_string().into(),
                ..Default::default()
            };
            // A write that fails (a leader change) is simply not counted.
            let _ = client.put(put).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The chart's axis labels, lowest and highest commit index shown.
fn chart_range(dom: &str) -> (u64, u64) {
    let label = |id: &str| {
        let open = format!("<text id=\"{id}\"");
        let at = dom
            .find(&open)
            .unwrap_or_else(|| panic!("no {id} in {dom}"));
        let rest = &dom[at..];
        let start = rest.find('>').unwrap() + 1;
        let end = rest.find("</text>").unwrap();
        rest[start..end].parse().unwrap_or(0)
    };
    (label("ymin"), label("ymax"))
}

/// The DOM once the chart shows the commit index rising during one load.
fn wait_for_chart_to_climb(profile: &Path, url: &str) -> String {
    let mut last = String::new();
    let climbed = flotilla_testkit::wait_until(Duration::from_secs(60), || {
        let (dom, _) = chromium(profile, url, &["--dump-dom"]);
        let (lo, hi) = chart_range(&dom);
        last = dom;
        (hi > lo).then_some(())
    });
    assert!(climbed.is_some(), "the chart never climbed:\n{last}");
    last
}

/// The number in the element with id `id` of a DOM dump (0 if absent).
fn number(dom: &str, id: &str) -> f64 {
    let Some(at) = dom.find(&format!("id=\"{id}\">")) else {
        return 0.0;
    };
    let rest = &dom[at + id.len() + 6..];
    rest[..rest.find('<').unwrap_or(0)].parse().unwrap_or(0.0)
}

/// The page of the member the writes go to charts its own metrics: its
/// Put count and its fsyncs are above zero, with percentiles shown (it
/// may be a follower, which proposes nothing itself), and its Raft log
/// lists the writes' command entries.
fn metrics_move(profile: &Path, url: &str) {
    let mut last = String::new();
    let moved = flotilla_testkit::wait_until(Duration::from_secs(60), || {
        let (dom, log) = chromium(profile, url, &["--dump-dom"]);
        assert!(
            !log.contains("Uncaught"),
            "the page logged an error:\n{log}"
        );
        let ok = number(&dom, "total-Put") > 0.0
            && number(&dom, "fsync-count") > 0.0
            && number(&dom, "sent-total") > 0.0
            && dom.contains("<tr data-kind=\"command\">")
            && dom.contains("<pre id=\"errors\"></pre>")
            && dom.contains("<polyline stroke=");
        last = dom;
        ok.then_some(())
    });
    assert!(
        moved.is_some(),
        "the metrics never showed the writes:\n{last}"
    );
}

/// Saves a screenshot of the whole member page (down to its Raft log) as
/// a test artifact.
fn screenshot(profile: &Path, url: &str) {
    screenshot_as(profile, url, "console.png", 2200);
}

/// Saves a screenshot of the page, `height` pixels tall, as test
/// artifact `name`.
fn screenshot_as(profile: &Path, url: &str, name: &str, height: u32) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&path);
    let shot = format!("--screenshot={}", path.display());
    let size = format!("--window-size=1200,{height}");
    chromium(profile, url, &[&shot, &size]);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "no screenshot at {}", path.display());
    eprintln!("screenshot: {} ({size} bytes)", path.display());
}

/// The task rows of the MapReduce console in a DOM dump: (kind, state).
fn task_rows(dom: &str) -> Vec<(String, String)> {
    dom.split("<tr class=\"task\"")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            (
                attr(tag, "data-kind").into(),
                attr(tag, "data-state").into(),
            )
        })
        .collect()
}

// Issue 25: `flotilla mr run` prints its console's URL at the start, and
// the page, in a real browser, shows every task of the running job (the
// maps done while the slow reduces run) with no JavaScript error.
#[test]
fn the_mapreduce_console_shows_the_running_job_in_a_real_browser() {
    if chromium_missing() {
        return;
    }
    let s = flotilla_testkit::Scratch::new("mr-console");
    let inputs = common::link_texts(&s.path);
    let err = std::fs::File::create(s.path.join("run.err")).unwrap();
    let mut cmd = common::flotilla(&s.path);
    cmd.args(["mr", "run", "--app", "early_exit", "--reduces", "2"])
        .args(["--app-param", "reduce_sleep_ms=8000", "--out", "out"])
        .args(&inputs)
        .stdout(Stdio::null())
        .stderr(err);
    let mut job = flotilla_testkit::Proc::spawn("mr run", &mut cmd);
    let url = flotilla_testkit::wait_for("the console's URL", Duration::from_secs(30), || {
        let said = std::fs::read_to_string(s.path.join("run.err")).unwrap_or_default();
        let at = said.find("console: ")?;
        Some(said[at + 9..].lines().next()?.to_string())
    });
    let profile = s.path.join("chromium");
    let mut last = String::new();
    let shown = flotilla_testkit::wait_until(Duration::from_secs(30), || {
        let (dom, log) = chromium(&profile, &url, &["--dump-dom"]);
        assert!(
            !log.contains("Uncaught"),
            "the page logged an error:\n{log}"
        );
        let rows = task_rows(&dom);
        let maps_done = rows
            .iter()
            .filter(|(k, st)| k == "map" && st == "done")
            .count();
        let reduces = rows.iter().filter(|(k, _)| k == "reduce").count();
        let ok = dom.contains("<pre id=\"errors\"></pre>")
            && dom.contains("class=\"state-running\"")
            && maps_done == inputs.len()
            && reduces == 2;
        last = dom;
        ok.then_some(())
    });
    assert!(shown.is_some(), "the console never showed the job:\n{last}");
    assert!(last.contains("lost map outputs: 0"), "{last}");
    screenshot_as(&profile, &url, "mr-console.png", 800);
    assert!(job.wait(Duration::from_secs(120)).success());
}
