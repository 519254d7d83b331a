//! Instant arithmetic helpers mirroring etcd's Go time conversions.

use std::time::{Duration, Instant};

/// Nanoseconds per second.
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// `now` shifted by a signed number of nanoseconds; `None` on overflow.
pub(crate) fn offset_ns(now: Instant, ns: i128) -> Option<Instant> {
    let magnitude = u64::try_from(ns.unsigned_abs()).ok()?;
    if ns >= 0 {
        now.checked_add(Duration::from_nanos(magnitude))
    } else {
        now.checked_sub(Duration::from_nanos(magnitude))
    }
}

/// `now + extend + secs` seconds (`secs` may be negative); `None` on overflow,
/// which callers treat as "never expires".
pub(crate) fn add_secs(now: Instant, extend: Duration, secs: i64) -> Option<Instant> {
    let ns = i128::try_from(extend.as_nanos()).ok()? + i128::from(secs) * NANOS_PER_SEC;
    offset_ns(now, ns)
}

/// Signed nanoseconds from `now` until `deadline` (negative once passed).
pub(crate) fn signed_ns_until(now: Instant, deadline: Instant) -> i128 {
    if deadline >= now {
        i128::try_from(deadline.duration_since(now).as_nanos()).unwrap_or(i128::MAX)
    } else {
        -i128::try_from(now.duration_since(deadline).as_nanos()).unwrap_or(i128::MAX)
    }
}

/// Whole seconds until `deadline`, truncated toward zero like Go's
/// `int64(d.Seconds())`: 1.9 s -> 1, -0.4 s -> 0, -1.2 s -> -1.
pub(crate) fn trunc_secs_until(now: Instant, deadline: Instant) -> i64 {
    let secs = signed_ns_until(now, deadline) / NANOS_PER_SEC;
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Whole seconds until `deadline`, rounded up like `math.Ceil(d.Seconds())`.
pub(crate) fn ceil_secs_until(now: Instant, deadline: Instant) -> i64 {
    let ns = signed_ns_until(now, deadline);
    let mut secs = ns / NANOS_PER_SEC;
    if ns % NANOS_PER_SEC > 0 {
        secs += 1;
    }
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_go() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let ms = Duration::from_millis;
        assert_eq!(trunc_secs_until(t0, t0 + ms(1900)), 1);
        assert_eq!(trunc_secs_until(t0, t0 + ms(999)), 0);
        assert_eq!(trunc_secs_until(t0 + ms(400), t0), 0);
        assert_eq!(trunc_secs_until(t0 + ms(1200), t0), -1);
        assert_eq!(ceil_secs_until(t0, t0 + ms(1001)), 2);
        assert_eq!(ceil_secs_until(t0, t0 + ms(1000)), 1);
        assert_eq!(ceil_secs_until(t0, t0), 0);
        assert_eq!(add_secs(t0, ms(500), -1), Some(t0 - ms(500)));
        assert_eq!(offset_ns(t0, -1_000_000_000), Some(t0 - ms(1000)));
    }
}
