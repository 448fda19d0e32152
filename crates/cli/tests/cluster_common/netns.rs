//! Partitions with Linux network namespaces, where the machine allows
//! them: the test runs itself again inside a new user, network and mount
//! namespace (`unshare -rnm`, no privilege needed where user namespaces
//! are enabled), makes one network namespace per member, each joined to a
//! bridge by a veth pair (member i at 10.77.0.i, the test at 10.77.0.254,
//! all private to that namespace), and cuts a member off by taking its
//! bridge port down. Where any of that is not possible the test prints
//! why and passes without running: the fault proxy covers the same faults
//! everywhere.

use std::process::Command;

/// Set in the environment of the run inside the namespaces.
const INNER: &str = "FLOTILLA_NETNS_INNER";

/// Where the caller stands.
pub enum Where {
    /// Inside the namespaces: run the test.
    Inside,
    /// Namespaces are not available, for this reason.
    Skipped(String),
    /// The inner run passed; nothing more to do.
    Done,
}

/// Runs the test `name` of this test binary again inside new namespaces,
/// unless this is that run.
pub fn enter(name: &str) -> Where {
    if std::env::var_os(INNER).is_some() {
        return Where::Inside;
    }
    match Command::new("unshare").args(["-rnm", "true"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr).trim().to_string();
            return Where::Skipped(format!("`unshare -rnm` is not allowed here: {why}"));
        }
        Err(e) => return Where::Skipped(format!("no `unshare` command: {e}")),
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("-rnm")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the run inside namespaces failed:\n{text}"
    );
    for line in text
        .lines()
        .filter(|l| l.contains("skipped") || l.contains("checked"))
    {
        eprintln!("inside the namespaces: {line}");
    }
    Where::Done
}

/// The members' namespaces, made inside the test's own.
pub struct Netns {
    n: usize,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(format!("`{}` failed: {why}", args.join(" ")))
    }
}

impl Netns {
    /// A bridge and `n` member namespaces (call inside [`enter`]'s run).
    pub fn setup(n: usize) -> Result<Netns, String> {
        // `ip netns` keeps its names under /run/netns: a private /run.
        sh(&["mount", "-t", "tmpfs", "flotilla-run", "/run"])?;
        sh(&["ip", "link", "set", "lo", "up"])?;
        sh(&["ip", "link", "add", "fl-br", "type", "bridge"])?;
        sh(&["ip", "addr", "add", "10.77.0.254/24", "dev", "fl-br"])?;
        sh(&["ip", "link", "set", "fl-br", "up"])?;
        for i in 1..=n {
            let (ns, v, e) = (format!("fm{i}"), format!("fv{i}"), format!("fe{i}"));
            let addr = format!("10.77.0.{i}/24");
            sh(&["ip", "netns", "add", &ns])?;
            sh(&["ip", "link", "add", &v, "type", "veth", "peer", "name", &e])?;
            sh(&["ip", "link", "set", &e, "netns", &ns])?;
            sh(&["ip", "link", "set", &v, "master", "fl-br", "up"])?;
            sh(&["ip", "-n", &ns, "addr", "add", &addr, "dev", &e])?;
            sh(&["ip", "-n", &ns, "link", "set", &e, "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        sh(&["ip", "netns", "exec", "fm1", "true"])?;
        Ok(Netns { n })
    }

    /// Member i's client and peer address.
    pub fn endpoints(&self) -> Vec<String> {
        (1..=self.n).map(|i| format!("10.77.0.{i}:2379")).collect()
    }

    /// How to run a command in member i's namespace.
    pub fn prefixes(&self) -> Vec<Vec<String>> {
        (1..=self.n)
            .map(|i| {
                ["ip", "netns", "exec", &format!("fm{i}")]
                    .map(String::from)
                    .to_vec()
            })
            .collect()
    }

    /// Connects (`up`) or cuts off member `i` (0-based), both ways, from
    /// the other members and the clients.
    pub fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        sh(&["ip", "link", "set", &format!("fv{}", i + 1), state]).unwrap();
    }
}
