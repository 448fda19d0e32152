//! How an etcd range request's answer is shaped from the pairs the store
//! read: revision filters, sort order, limit, `keys_only`, `count_only`,
//! as etcd's own apply step does them.
//!
//! The store reads pairs in ascending key order and can stop at a limit.
//! With a sort other than etcd's default, or a revision filter, etcd reads
//! every pair of the range, filters, sorts and only then cuts to the
//! limit (setting `more`); so does [`RangeView::finish`], and
//! [`RangeView::fetch_limit`] tells the store to read everything in that
//! case. `count` is the number of keys in the range before filters, as in
//! etcd.
//!
//! Reads at a revision are the store's (its MVCC history): one below the
//! last compaction gets etcd's "required revision has been compacted", one
//! past the store's revision "required revision is a future revision"
//! (both `OutOfRange`), from the replica itself.

use flotilla_kv::KeyValue;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use tonic::Status;

/// What a range request asks of its answer, beyond which keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeView {
    /// Most pairs returned (0: no limit).
    pub limit: u64,
    sort: Option<(SortTarget, bool)>,
    min_mod: u64,
    max_mod: u64,
    min_create: u64,
    max_create: u64,
    /// Only keys, no values.
    pub keys_only: bool,
    /// Only the count.
    pub count_only: bool,
}

fn rev(v: i64, what: &str) -> Result<u64, Status> {
    u64::try_from(v).map_err(|_| Status::invalid_argument(format!("negative {what}")))
}

impl RangeView {
    /// The view of `r`; refuses negative numbers and unknown enum values.
    pub fn of(r: &pb::RangeRequest) -> Result<RangeView, Status> {
        let target = SortTarget::try_from(r.sort_target).map_err(|_| {
            Status::invalid_argument(format!("unknown sort target {}", r.sort_target))
        })?;
        let order = SortOrder::try_from(r.sort_order).map_err(|_| {
            Status::invalid_argument(format!("unknown sort order {}", r.sort_order))
        })?;
        // etcd: a target other than the key with no order sorts ascending;
        // the key ascending is the store's own order.
        let sort = match (target, order) {
            (SortTarget::Key, SortOrder::None | SortOrder::Ascend) => None,
            (_, SortOrder::Descend) => Some((target, true)),
            (_, _) => Some((target, false)),
        };
        Ok(RangeView {
            limit: rev(r.limit, "limit")?,
            sort,
            min_mod: rev(r.min_mod_revision, "min_mod_revision")?,
            max_mod: rev(r.max_mod_revision, "max_mod_revision")?,
            min_create: rev(r.min_create_revision, "min_create_revision")?,
            max_create: rev(r.max_create_revision, "max_create_revision")?,
            keys_only: r.keys_only,
            count_only: r.count_only,
        })
    }

    fn filters(&self) -> bool {
        self.min_mod != 0 || self.max_mod != 0 || self.min_create != 0 || self.max_create != 0
    }

    /// The limit to read with: everything when the answer is sorted or
    /// filtered before it is cut.
    pub fn fetch_limit(&self) -> u64 {
        if self.sort.is_some() || self.filters() {
            0
        } else {
            self.limit
        }
    }

    fn keeps(&self, kv: &KeyValue) -> bool {
        (self.min_mod == 0 || kv.mod_rev >= self.min_mod)
            && (self.max_mod == 0 || kv.mod_rev <= self.max_mod)
            && (self.min_create == 0 || kv.create_rev >= self.min_create)
            && (self.max_create == 0 || kv.create_rev <= self.max_create)
    }

    /// The answer: `kvs` as read (ascending keys, at most `fetch_limit`),
    /// `count` the keys in the range.
    pub fn finish(&self, mut kvs: Vec<KeyValue>, count: u64) -> pb::RangeResponse {
        kvs.retain(|kv| self.keeps(kv));
        if let Some((target, descend)) = self.sort {
            // Stable, so ties keep the key order.
            match target {
                SortTarget::Key => {}
                SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
                SortTarget::Create => kvs.sort_by_key(|kv| kv.create_rev),
                SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_rev),
                SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
            }
            if descend {
                kvs.reverse();
            }
        }
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let mut more = count > kvs.len() as u64 && self.fetch_limit() != 0;
        if self.limit != 0 && kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
        pb::RangeResponse {
            header: None,
            kvs: if self.count_only {
                Vec::new()
            } else {
                kvs.iter()
                    .map(|kv| super::convert::key_value(kv, self.keys_only))
                    .collect()
            },
            more,
            count: i64::try_from(count).unwrap_or(i64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn kv(key: &str, value: &str, create: u64, m: u64, version: u64) -> KeyValue {
        KeyValue {
            key: Bytes::from(key.to_string()),
            value: Bytes::from(value.to_string()),
            create_rev: create,
            mod_rev: m,
            version,
            lease: 0,
        }
    }

    fn keys(r: &pb::RangeResponse) -> Vec<String> {
        r.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect()
    }

    fn pairs() -> Vec<KeyValue> {
        vec![
            kv("a", "z", 1, 7, 3),
            kv("b", "x", 2, 2, 1),
            kv("c", "y", 3, 5, 2),
        ]
    }

    #[test]
    fn sorts_filter_and_limit_apply_in_etcds_order() {
        let mut r = pb::RangeRequest {
            sort_target: SortTarget::Mod as i32,
            sort_order: SortOrder::Descend as i32,
            limit: 2,
            ..Default::default()
        };
        let v = RangeView::of(&r).unwrap();
        assert_eq!(v.fetch_limit(), 0);
        let out = v.finish(pairs(), 3);
        assert_eq!(keys(&out), ["a", "c"]);
        assert!(out.more);
        assert_eq!(out.count, 3);

        // A target with no order sorts ascending.
        r.sort_order = SortOrder::None as i32;
        r.sort_target = SortTarget::Value as i32;
        r.limit = 0;
        assert_eq!(
            keys(&RangeView::of(&r).unwrap().finish(pairs(), 3)),
            ["b", "c", "a"]
        );

        // Filters drop pairs but not the count.
        let f = pb::RangeRequest {
            min_mod_revision: 3,
            max_create_revision: 2,
            ..Default::default()
        };
        let out = RangeView::of(&f).unwrap().finish(pairs(), 3);
        assert_eq!(keys(&out), ["a"]);
        assert!(!out.more);
        assert_eq!(out.count, 3);
    }

    #[test]
    fn the_default_order_reads_only_up_to_the_limit() {
        let r = pb::RangeRequest {
            limit: 1,
            keys_only: true,
            ..Default::default()
        };
        let v = RangeView::of(&r).unwrap();
        assert_eq!(v.fetch_limit(), 1);
        let out = v.finish(pairs()[..1].to_vec(), 3);
        assert_eq!(keys(&out), ["a"]);
        assert!(out.kvs[0].value.is_empty());
        assert!(out.more);
        let bad = pb::RangeRequest {
            sort_target: 9,
            ..Default::default()
        };
        assert_eq!(
            RangeView::of(&bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
