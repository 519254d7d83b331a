//! Txn compare evaluation, following etcd's `applyCompare`/`compareKV`.

use std::cmp::Ordering;

use super::key_index::Record;
use super::store::{KeySpan, Store};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::Compare;

impl Store {
    /// Evaluates one compare against the store at revision `rev`.
    ///
    /// With a `range_end`, every live key in the range must satisfy it. If no key
    /// matches, a VALUE compare is false and other targets compare against a zero
    /// key-value (so `version = 0`, `create < 5`, ... succeed on missing keys).
    pub(crate) fn compare_holds(&self, c: &Compare, rev: i64) -> bool {
        let span = KeySpan::new(&c.key, &c.range_end);
        let mut any = false;
        let mut all = true;
        self.for_each_live(&span, rev, |_, rec| {
            any = true;
            all = compare_record(c, Some(rec));
            all
        });
        if !any {
            if c.target == CompareTarget::Value as i32 {
                return false;
            }
            return compare_record(c, None);
        }
        all
    }
}

/// Compares one key-value (`None` = the zero key-value) with the compare's operand.
/// A target union that does not match the target counts as a zero operand, as in etcd.
fn compare_record(c: &Compare, rec: Option<&Record>) -> bool {
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            rec.map_or(&[][..], |r| &r.value[..]).cmp(want)
        }
        Ok(CompareTarget::Create) => {
            let want = match c.target_union {
                Some(TargetUnion::CreateRevision(v)) => v,
                _ => 0,
            };
            rec.map_or(0, |r| r.create).cmp(&want)
        }
        Ok(CompareTarget::Mod) => {
            let want = match c.target_union {
                Some(TargetUnion::ModRevision(v)) => v,
                _ => 0,
            };
            rec.map_or(0, |r| r.main).cmp(&want)
        }
        Ok(CompareTarget::Version) => {
            let want = match c.target_union {
                Some(TargetUnion::Version(v)) => v,
                _ => 0,
            };
            rec.map_or(0, |r| r.version).cmp(&want)
        }
        Ok(CompareTarget::Lease) => {
            let want = match c.target_union {
                Some(TargetUnion::Lease(v)) => v,
                _ => 0,
            };
            rec.map_or(0, |r| r.lease).cmp(&want)
        }
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}
