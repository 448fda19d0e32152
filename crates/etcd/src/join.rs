//! The cluster's initial member list, which every member needs: the
//! cluster id is a hash of it, and a member's Raft log and member table
//! start from it (later changes are conf-change entries in the log).
//!
//! A founding member has it from `--peers`. A member that joins an
//! existing cluster (`--join`) asks the members it is pointed at
//! (`flotilla.raft.v1.Proposals/Join`), which answer only for an id that
//! was added and not removed, and saves the answer in
//! `<data-dir>/initial-cluster`, which later starts with `--join` read, so
//! a restart needs no network and cannot pick up a different list. (A
//! founder writes the file too; its `--peers` stays authoritative, and the
//! data directory's `member` file refuses a different list.)

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flotilla_proto::raft::v1::JoinRequest;
use flotilla_proto::raft::v1::proposals_client::ProposalsClient;
use flotilla_raft::NodeId;
use tonic::transport::Endpoint;

/// The file, in the data directory.
pub const INITIAL_CLUSTER_FILE: &str = "initial-cluster";

/// Why the initial member list could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is damaged.
    #[error("{path}: line {line:?} is not ID=HOST:PORT")]
    BadFile {
        /// The file.
        path: String,
        /// The line.
        line: String,
    },
    /// A member refused the join (not added, or removed).
    #[error("{addr} refused member {id} joining: {message}")]
    Refused {
        /// Who refused.
        addr: String,
        /// The joining id.
        id: NodeId,
        /// Its reason.
        message: String,
    },
    /// No member could be asked.
    #[error("no member answered the join request ({0})")]
    Unreachable(String),
    /// The id was one of the founding members: it cannot join.
    #[error("member {0} is one of the cluster's founding members; start it without --join")]
    Founder(NodeId),
}

/// Reads the saved list, if the data directory has one.
pub fn read_saved(dir: &Path) -> Result<Option<BTreeMap<NodeId, String>>, JoinError> {
    let path = dir.join(INITIAL_CLUSTER_FILE);
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(JoinError::Io {
                path: shown,
                source,
            });
        }
    };
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line
            .split_once('=')
            .and_then(|(id, addr)| Some((id.trim().parse::<u64>().ok()?, addr.trim())));
        match parsed {
            Some((id, addr)) if id > 0 && !addr.is_empty() => {
                out.insert(NodeId(id), addr.to_string());
            }
            _ => {
                return Err(JoinError::BadFile {
                    path: shown,
                    line: line.to_string(),
                });
            }
        }
    }
    Ok(Some(out))
}

/// Saves the list (atomically: a crash leaves the old file or the new).
pub fn save(dir: &Path, initial: &BTreeMap<NodeId, String>) -> Result<(), JoinError> {
    let path = dir.join(INITIAL_CLUSTER_FILE);
    let tmp = dir.join(format!("{INITIAL_CLUSTER_FILE}.tmp"));
    let text: String = initial
        .iter()
        .map(|(id, addr)| format!("{id}={addr}\n"))
        .collect();
    let io = |source| JoinError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// Asks the members at `addrs` for the initial list on behalf of `id`;
/// the first answer wins, a refusal is reported as such.
pub async fn ask(
    id: NodeId,
    addrs: &[String],
    tls: Option<&std::sync::Arc<flotilla_tls::ClientTls>>,
) -> Result<BTreeMap<NodeId, String>, JoinError> {
    let mut failures = Vec::new();
    let mut refusal = None;
    for addr in addrs {
        match ask_one(id, addr, tls).await {
            Ok(initial) if initial.contains_key(&id) => return Err(JoinError::Founder(id)),
            Ok(initial) => return Ok(initial),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                failures.push(format!("{addr}: {}", status.message()));
            }
            Err(status) => {
                refusal.get_or_insert(JoinError::Refused {
                    addr: addr.clone(),
                    id,
                    message: status.message().to_string(),
                });
            }
        }
    }
    Err(refusal.unwrap_or_else(|| JoinError::Unreachable(failures.join("; "))))
}

async fn ask_one(
    id: NodeId,
    addr: &str,
    tls: Option<&std::sync::Arc<flotilla_tls::ClientTls>>,
) -> Result<BTreeMap<NodeId, String>, tonic::Status> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| tonic::Status::unavailable(format!("bad address: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let connected = match tls {
        Some(tls) => endpoint.connect_with_connector(tls.connector()).await,
        None => endpoint.connect().await,
    };
    let channel =
        connected.map_err(|e| tonic::Status::unavailable(format!("cannot connect: {e}")))?;
    let resp = ProposalsClient::new(channel)
        .join(JoinRequest { id: id.get() })
        .await?
        .into_inner();
    Ok(resp
        .initial
        .into_iter()
        .map(|m| (NodeId(m.id), m.addr))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saved_list_round_trips_and_damage_is_named() {
        let dir = std::env::temp_dir().join(format!("flotilla-join-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(read_saved(&dir).unwrap().is_none());
        let initial: BTreeMap<NodeId, String> = (1..=3)
            .map(|i| (NodeId(i), format!("127.0.0.1:{}", 7000 + i)))
            .collect();
        save(&dir, &initial).unwrap();
        assert_eq!(read_saved(&dir).unwrap(), Some(initial));
        std::fs::write(dir.join(INITIAL_CLUSTER_FILE), "1=a:1\nnonsense\n").unwrap();
        let err = read_saved(&dir).unwrap_err().to_string();
        assert!(err.contains("\"nonsense\""), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
