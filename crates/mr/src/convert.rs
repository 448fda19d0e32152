//! Conversions between the wire messages (`flotilla_proto::mapreduce::v1`)
//! and the core's types. Messages from peers are validated here, once, on
//! the way in (unknown enum values, missing fields), and turned into errors
//! that name the field.

use flotilla_mapreduce::task::{
    AttemptId, DoneReport, ExitReason, MapOutput, MapTask, ReduceTask, Reply, Split, TaskKind,
    TaskRef,
};
use flotilla_mapreduce::time::Millis;
use flotilla_proto::mapreduce::v1 as pb;

/// A message that does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("malformed {message}: {why}")]
pub struct Malformed {
    message: &'static str,
    why: String,
}

fn malformed(message: &'static str, why: impl Into<String>) -> Malformed {
    Malformed {
        message,
        why: why.into(),
    }
}

pub(crate) fn task_ref_to_pb(t: TaskRef) -> pb::TaskRef {
    pb::TaskRef {
        kind: match t.kind {
            TaskKind::Map => pb::TaskKind::Map,
            TaskKind::Reduce => pb::TaskKind::Reduce,
        } as i32,
        index: t.index,
        attempt: t.attempt.0,
    }
}

pub(crate) fn task_ref_from_pb(t: Option<pb::TaskRef>) -> Result<TaskRef, Malformed> {
    let t = t.ok_or_else(|| malformed("task reference", "missing"))?;
    let kind = match pb::TaskKind::try_from(t.kind) {
        Ok(pb::TaskKind::Map) => TaskKind::Map,
        Ok(pb::TaskKind::Reduce) => TaskKind::Reduce,
        _ => {
            return Err(malformed(
                "task reference",
                format!("unknown kind {}", t.kind),
            ));
        }
    };
    Ok(TaskRef {
        kind,
        index: t.index,
        attempt: AttemptId(t.attempt),
    })
}

fn split_to_pb(s: &Split) -> pb::Split {
    pb::Split {
        file: s.file.clone(),
        start: s.start,
        end: s.end,
    }
}

pub(crate) fn reply_to_pb(reply: Reply) -> pb::TaskReply {
    use pb::task_reply::Kind;
    let kind = match reply {
        Reply::Map(t) => Kind::Map(pb::MapTask {
            index: t.index,
            attempt: t.attempt.0,
            split: Some(split_to_pb(&t.split)),
        }),
        Reply::Reduce(t) => Kind::Reduce(pb::ReduceTask {
            index: t.index,
            attempt: t.attempt.0,
            inputs: t
                .inputs
                .into_iter()
                .map(|i| pb::MapOutput {
                    map_index: i.map_index,
                    map_attempt: i.map_attempt.0,
                    host: i.host,
                    bytes: i.bytes,
                })
                .collect(),
        }),
        Reply::Wait(d) => Kind::Wait(pb::Wait {
            retry_after_ms: d.0.min(u64::from(u32::MAX)) as u32,
        }),
        Reply::Exit(reason) => {
            let (reason, message) = match reason {
                ExitReason::JobDone => (pb::ExitReason::JobDone, String::new()),
                ExitReason::JobFailed(m) => (pb::ExitReason::JobFailed, m),
                ExitReason::UnknownWorker => (pb::ExitReason::UnknownWorker, String::new()),
            };
            Kind::Exit(pb::Exit {
                reason: reason as i32,
                message,
            })
        }
    };
    pb::TaskReply { kind: Some(kind) }
}

pub(crate) fn reply_from_pb(reply: pb::TaskReply) -> Result<Reply, Malformed> {
    use pb::task_reply::Kind;
    Ok(match reply.kind {
        Some(Kind::Map(t)) => {
            let s = t.split.ok_or_else(|| malformed("map task", "no split"))?;
            if s.end < s.start {
                return Err(malformed(
                    "map task",
                    format!("split {}..{}", s.start, s.end),
                ));
            }
            Reply::Map(MapTask {
                index: t.index,
                attempt: AttemptId(t.attempt),
                split: Split {
                    file: s.file,
                    start: s.start,
                    end: s.end,
                },
            })
        }
        Some(Kind::Reduce(t)) => Reply::Reduce(ReduceTask {
            index: t.index,
            attempt: AttemptId(t.attempt),
            inputs: t
                .inputs
                .into_iter()
                .map(|i| MapOutput {
                    map_index: i.map_index,
                    map_attempt: AttemptId(i.map_attempt),
                    host: i.host,
                    bytes: i.bytes,
                })
                .collect(),
        }),
        Some(Kind::Wait(w)) => Reply::Wait(Millis(u64::from(w.retry_after_ms))),
        Some(Kind::Exit(e)) => Reply::Exit(match pb::ExitReason::try_from(e.reason) {
            Ok(pb::ExitReason::JobDone) => ExitReason::JobDone,
            Ok(pb::ExitReason::JobFailed) => ExitReason::JobFailed(e.message),
            Ok(pb::ExitReason::UnknownWorker) => ExitReason::UnknownWorker,
            _ => return Err(malformed("exit", format!("unknown reason {}", e.reason))),
        }),
        None => return Err(malformed("task reply", "empty")),
    })
}

pub(crate) fn done_to_pb(worker: u64, task: TaskRef, r: &DoneReport) -> pb::TaskDone {
    pb::TaskDone {
        worker_id: worker,
        task: Some(task_ref_to_pb(task)),
        partition_bytes: r.partition_bytes.clone(),
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
    }
}
