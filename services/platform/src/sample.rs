//! Made-up data that is the same on every run, and the figures benchmarks print: the demo's
//! generated marketplace and the benchmarks' catalogues draw from [`XorShift`]; every benchmark
//! reports [`percentile`]s of its timings.
//!
//! Why not the `rand` crate: the demo's data must stay the same across versions (its
//! idempotency keys and the tests' expected counts come from it), and `rand` promises no stable
//! sequence for its small generators.

use std::time::Duration;

/// xorshift64 (Marsaglia 2003): a tiny deterministic generator, enough for made-up data.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0, which would stay 0 for ever, is taken as 1).
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (0 when `n` is 0, drawing nothing).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            // The remainder is below n, a usize.
            usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
        }
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            let span = hi.abs_diff(lo).saturating_add(1);
            lo.saturating_add_unsigned(self.next_u64() % span)
        }
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One of `all` (`None` when it is empty).
    pub fn pick<'a, T>(&mut self, all: &'a [T]) -> Option<&'a T> {
        all.get(self.below(all.len()))
    }

    /// One to `most` distinct items of `all`.
    pub fn some<T: Clone + PartialEq>(&mut self, all: &[T], most: usize) -> Vec<T> {
        let n = 1 + self.below(most.max(1));
        let mut out: Vec<T> = Vec::new();
        for _ in 0..n {
            if let Some(v) = all.get(self.below(all.len()))
                && !out.contains(v)
            {
                out.push(v.clone());
            }
        }
        out
    }
}

/// The `p`-th percentile (0 < p ≤ 1) of `sorted` timings by the nearest-rank method: the
/// smallest that at least `p` of them do not exceed. Zero for none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median and 99th percentile of `samples`, in milliseconds (what the benchmarks print).
pub fn p50_p99_ms(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let mut a = XorShift::new(20201130);
        let mut b = XorShift::new(20201130);
        let draws: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        assert_eq!(draws, (0..5).map(|_| b.next_u64()).collect::<Vec<_>>());
        // xorshift64 of 1, by hand: 1 ^ 1<<13 = 8193; ^ >>7 (64) = 8257; ^ <<17 = 1082269761.
        assert_eq!(XorShift::new(0).next_u64(), 1_082_269_761);
        let mut c = XorShift::new(7);
        assert!((0..1000).all(|_| (-3..=3).contains(&c.between(-3, 3))));
        assert_eq!(c.below(0), 0);
        assert_eq!(c.pick::<u8>(&[]), None);
        let some = c.some(&[1, 2, 3], 3);
        assert!(!some.is_empty() && some.len() <= 3);
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 ms: p50 is the 50th, p99 the 99th.
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&ms, 0.99), Duration::from_millis(99));
        assert_eq!(p50_p99_ms(vec![]), (0.0, 0.0));
        assert_eq!(p50_p99_ms(vec![Duration::from_millis(3)]), (3.0, 3.0));
    }
}
