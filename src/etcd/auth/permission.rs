//! Key-range permission checking, as etcd's `range_perm_cache.go` and `pkg/adt` do it.
//!
//! Keys are compared as etcd's `BytesAffineComparable`: byte-wise, except that the empty
//! byte string is the *largest* value (it stands for "+infinity"). With that order:
//!
//! * a granted permission with an empty `range_end` is the single key `key`, i.e. the
//!   interval `[key, key + "\0")`;
//! * a `range_end` of `"\0"` means "every key from `key` on" (`--from-key`, and the
//!   `--prefix` of the empty key): `[key, +inf)`;
//! * any other `range_end` gives `[key, range_end)` (`--prefix` grants arrive here with
//!   the prefix end already computed by the client).
//!
//! A request for one key (empty `range_end`) is allowed when some granted interval of the
//! right type contains it. A request for a range (`range_end` `"\0"` meaning open-ended)
//! is allowed when the union of the granted intervals overlapping it covers it entirely,
//! checked exactly like `adt.IntervalTree.Contains`. READWRITE grants count for both READ
//! and WRITE. The root role is handled by the caller.

use std::cmp::Ordering;

use crate::proto::authpb::{self, permission::Type as PermType};

/// A key bound in etcd's `BytesAffineComparable` order: empty is +infinity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound(pub Vec<u8>);

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.0.is_empty(), other.0.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.0.cmp(&other.0),
        }
    }
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A half-open interval `[begin, end)` in `Bound` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// Inclusive start.
    pub begin: Bound,
    /// Exclusive end.
    pub end: Bound,
}

impl Interval {
    /// The single key `key`: `[key, key + "\0")`.
    pub fn point(key: &[u8]) -> Self {
        let mut end = key.to_vec();
        end.push(0);
        Interval {
            begin: Bound(key.to_vec()),
            end: Bound(end),
        }
    }

    /// The interval a granted permission covers (see the module docs).
    pub fn from_permission(key: &[u8], range_end: &[u8]) -> Self {
        if range_end.is_empty() {
            Interval::point(key)
        } else {
            Interval::range(key, range_end)
        }
    }

    /// `[key, range_end)`, with a `range_end` of `"\0"` meaning +infinity.
    pub fn range(key: &[u8], range_end: &[u8]) -> Self {
        let end = if is_open_ended(range_end) {
            Vec::new()
        } else {
            range_end.to_vec()
        };
        Interval {
            begin: Bound(key.to_vec()),
            end: Bound(end),
        }
    }

    /// etcd's `Interval.Compare`: whether `self` and `other` overlap
    /// (neither lies entirely to the left or the right of the other).
    pub fn overlaps(&self, other: &Interval) -> bool {
        let left_of = self.begin < other.begin && self.end <= other.begin;
        let right_of = self.begin >= other.end;
        !left_of && !right_of
    }
}

/// `range_end == "\0"`: an open-ended range.
pub fn is_open_ended(range_end: &[u8]) -> bool {
    range_end == [0]
}

/// etcd 3.5's `isValidPermissionRange`: a non-empty key, and a range end that is empty
/// (single key), `"\0"` (open-ended) or greater than the key.
pub fn is_valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    if key.is_empty() {
        return false;
    }
    if range_end.is_empty() {
        return true;
    }
    Bound(key.to_vec()) < Bound(range_end.to_vec()) || is_open_ended(range_end)
}

/// The merged READ and WRITE intervals of one user (all of its roles).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnifiedPerms {
    read: Vec<Interval>,
    write: Vec<Interval>,
}

impl UnifiedPerms {
    /// Merges the permissions of `roles`. Unknown permission types are ignored, as in etcd.
    pub fn from_roles<'a>(roles: impl IntoIterator<Item = &'a authpb::Role>) -> Self {
        let mut perms = UnifiedPerms::default();
        for role in roles {
            for perm in &role.key_permission {
                let ivl = Interval::from_permission(&perm.key, &perm.range_end);
                match PermType::try_from(perm.perm_type) {
                    Ok(PermType::Read) => perms.read.push(ivl),
                    Ok(PermType::Write) => perms.write.push(ivl),
                    Ok(PermType::Readwrite) => {
                        perms.read.push(ivl.clone());
                        perms.write.push(ivl);
                    }
                    Err(_) => {}
                }
            }
        }
        let by_begin = |a: &Interval, b: &Interval| a.begin.cmp(&b.begin);
        perms.read.sort_by(by_begin);
        perms.write.sort_by(by_begin);
        perms
    }

    /// Whether `[key, range_end)` (a single key when `range_end` is empty, open-ended when
    /// it is `"\0"`) is allowed for `typ`. `Readwrite` requires both.
    pub fn permits(&self, key: &[u8], range_end: &[u8], typ: PermType) -> bool {
        match typ {
            PermType::Read => check(&self.read, key, range_end),
            PermType::Write => check(&self.write, key, range_end),
            PermType::Readwrite => check(&self.read, key, range_end) && check(&self.write, key, range_end),
        }
    }
}

fn check(granted: &[Interval], key: &[u8], range_end: &[u8]) -> bool {
    if range_end.is_empty() {
        let pt = Interval::point(key);
        granted.iter().any(|g| pt.overlaps(g))
    } else {
        contains(granted, &Interval::range(key, range_end))
    }
}

/// `adt.IntervalTree.Contains`: visit the granted intervals overlapping `req` in order of
/// their begin; they must be contiguous and span `req`. `granted` is sorted by begin.
fn contains(granted: &[Interval], req: &Interval) -> bool {
    let mut span: Option<(&Bound, &Bound)> = None; // (min begin, max end)
    for g in granted.iter().filter(|g| req.overlaps(g)) {
        match &mut span {
            None => span = Some((&g.begin, &g.end)),
            Some((_, max_end)) => {
                if *max_end < &g.begin {
                    return false;
                }
                if &g.end > *max_end {
                    *max_end = &g.end;
                }
            }
        }
    }
    match span {
        Some((min_begin, max_end)) => *max_end >= req.end && *min_begin <= req.begin,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn role(perms: &[(PermType, &[u8], &[u8])]) -> authpb::Role {
        authpb::Role {
            name: b"r".to_vec(),
            key_permission: perms
                .iter()
                .map(|(t, k, e)| authpb::Permission {
                    perm_type: *t as i32,
                    key: k.to_vec(),
                    range_end: e.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn bound_order_empty_is_infinite() {
        assert!(Bound(vec![]) > Bound(vec![0xff, 0xff]));
        assert!(Bound(b"a".to_vec()) < Bound(b"b".to_vec()));
        assert!(Bound(b"a".to_vec()) < Bound(b"a\0".to_vec()));
    }

    #[test]
    fn single_key_grant() {
        let p = UnifiedPerms::from_roles([&role(&[(PermType::Write, b"c", b"")])]);
        assert!(p.permits(b"c", b"", PermType::Write));
        assert!(!p.permits(b"c", b"", PermType::Read));
        assert!(!p.permits(b"c\0", b"", PermType::Write));
        assert!(!p.permits(b"b", b"", PermType::Write));
        // The range [c, c\0) is exactly the key c.
        assert!(p.permits(b"c", b"c\0", PermType::Write));
        assert!(!p.permits(b"c", b"d", PermType::Write));
    }

    #[test]
    fn range_grant_matches_real_etcd() {
        // Checked against etcd 3.4.23: grant read [a, c), write c, readwrite prefix p,
        // read from-key x.
        let p = UnifiedPerms::from_roles([&role(&[
            (PermType::Read, b"a", b"c"),
            (PermType::Write, b"c", b""),
            (PermType::Readwrite, b"p", b"q"),
            (PermType::Read, b"x", b"\0"),
        ])]);
        assert!(p.permits(b"a", b"", PermType::Read)); // get a
        assert!(p.permits(b"a", b"c", PermType::Read)); // get a c
        assert!(!p.permits(b"a", b"d", PermType::Read)); // get a d
        assert!(p.permits(b"b", b"c", PermType::Read)); // get b --prefix
        assert!(p.permits(b"c", b"", PermType::Write)); // put c
        assert!(!p.permits(b"b", b"", PermType::Write)); // put b
        assert!(p.permits(b"x", b"\0", PermType::Read)); // get x --from-key
        assert!(!p.permits(b"w", b"\0", PermType::Read)); // get w --from-key
        assert!(!p.permits(b"", b"\0", PermType::Read)); // get "" --from-key
        assert!(p.permits(b"pq", b"", PermType::Write)); // put pq
        assert!(p.permits(b"pq", b"", PermType::Readwrite));
        assert!(!p.permits(b"a", b"", PermType::Readwrite));
    }

    #[test]
    fn union_of_adjacent_and_overlapping_grants() {
        let p = UnifiedPerms::from_roles([
            &role(&[(PermType::Read, b"a", b"c")]),
            &role(&[(PermType::Readwrite, b"c", b"e"), (PermType::Read, b"d", b"g")]),
        ]);
        assert!(p.permits(b"a", b"g", PermType::Read));
        assert!(!p.permits(b"a", b"g\0", PermType::Read));
        assert!(!p.permits(b"a", b"e", PermType::Write));
        assert!(p.permits(b"c", b"e", PermType::Write));
        let gap = UnifiedPerms::from_roles([&role(&[(PermType::Read, b"a", b"b"), (PermType::Read, b"b\0", b"c")])]);
        assert!(!gap.permits(b"a", b"c", PermType::Read), "key b is not granted");
        assert!(gap.permits(b"b\0", b"c", PermType::Read));
    }

    #[test]
    fn open_ended_grant_and_request() {
        let all = UnifiedPerms::from_roles([&role(&[(PermType::Readwrite, b"\0", b"\0")])]);
        assert!(all.permits(b"\0", b"\0", PermType::Write)); // get "" --prefix
        assert!(all.permits(b"zzz", b"", PermType::Read));
        let none = UnifiedPerms::default();
        assert!(!none.permits(b"a", b"", PermType::Read));
        assert!(!none.permits(b"a", b"\0", PermType::Read));
    }

    #[test]
    fn inverted_request_is_a_point_check() {
        let p = UnifiedPerms::from_roles([&role(&[(PermType::Read, b"b", b"c")])]);
        assert!(p.permits(b"b", b"a", PermType::Read));
        assert!(!p.permits(b"d", b"a", PermType::Read));
    }

    #[test]
    fn valid_permission_ranges() {
        assert!(is_valid_permission_range(b"a", b""));
        assert!(is_valid_permission_range(b"a", b"b"));
        assert!(is_valid_permission_range(b"a", b"\0"));
        assert!(is_valid_permission_range(b"\0", b"\0"));
        assert!(!is_valid_permission_range(b"", b""));
        assert!(!is_valid_permission_range(b"", b"\0"));
        assert!(!is_valid_permission_range(b"b", b"a"));
        assert!(!is_valid_permission_range(b"a", b"a"));
    }

    // ---- property test against a brute-force model ----

    /// A non-empty key over a tiny alphabet.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 1..4)
    }

    /// (key, range_end): a single key, a bounded range (possibly inverted) or open-ended.
    fn range() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        prop_oneof![
            key().prop_map(|k| (k, vec![])),
            (key(), key()),
            key().prop_map(|k| (k, vec![0])),
        ]
    }

    fn perm_type() -> impl Strategy<Value = PermType> {
        prop_oneof![Just(PermType::Read), Just(PermType::Write), Just(PermType::Readwrite)]
    }

    /// Model: the set of keys a grant covers, as a predicate.
    fn grant_covers(k: &[u8], key: &[u8], end: &[u8]) -> bool {
        if end.is_empty() {
            k == key
        } else if end == [0] {
            k >= key
        } else {
            key <= k && k < end
        }
    }

    fn model(grants: &[(PermType, Vec<u8>, Vec<u8>)], req: &(Vec<u8>, Vec<u8>), typ: PermType) -> bool {
        let granted = |k: &[u8]| {
            grants
                .iter()
                .any(|(t, gk, ge)| (*t == typ || *t == PermType::Readwrite) && grant_covers(k, gk, ge))
        };
        let (rk, re) = req;
        let inverted = !re.is_empty() && re != &[0] && re <= rk;
        if re.is_empty() || inverted {
            return granted(rk);
        }
        // Every key in the request must be granted. The first ungranted key of the request,
        // if any, is its start or the end of some grant, so checking those candidates (plus
        // a small universe of keys) is exhaustive.
        let mut candidates: Vec<Vec<u8>> = vec![rk.clone()];
        for (_, gk, ge) in grants {
            candidates.push(if ge.is_empty() {
                let mut e = gk.clone();
                e.push(0);
                e
            } else {
                ge.clone()
            });
        }
        for a in [0u8, b'a', b'b'] {
            candidates.push(vec![a]);
            for b in [0u8, b'a', b'b'] {
                candidates.push(vec![a, b]);
            }
        }
        candidates
            .iter()
            .filter(|k| grant_covers(k, rk, re))
            .all(|k| granted(k))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn matches_brute_force(
            grants in proptest::collection::vec((perm_type(), range()), 0..5),
            req in range(),
            typ in prop_oneof![Just(PermType::Read), Just(PermType::Write)],
        ) {
            // Only grants etcd 3.5 accepts.
            let grants: Vec<(PermType, Vec<u8>, Vec<u8>)> = grants
                .into_iter()
                .filter(|(_, (k, e))| is_valid_permission_range(k, e))
                .map(|(t, (k, e))| (t, k, e))
                .collect();
            let refs: Vec<(PermType, &[u8], &[u8])> =
                grants.iter().map(|(t, k, e)| (*t, k.as_slice(), e.as_slice())).collect();
            let perms = UnifiedPerms::from_roles([&role(&refs)]);
            prop_assert_eq!(
                perms.permits(&req.0, &req.1, typ),
                model(&grants, &req, typ),
                "grants {:?} req {:?} {:?}", grants, req, typ
            );
        }
    }
}
