//! `sample`: keeps one element in N, by count or at random.

use crate::checkpoint::{StateReader, StateWriter};
use crate::operators::params::params;
use crate::operators::util::SplitMix64;
use crate::stage::{Element, Processor, StageError, Verdict};

/// Keeps one element in `every`: the 1st, (N+1)th, ... (deterministic), or
/// each with probability 1/N from a seeded generator (`random`).
pub struct Sample {
    every: u64,
    n: u64,
    rng: Option<SplitMix64>,
}

impl Sample {
    /// Keeps the first of every `every` elements.
    pub fn every(every: u64) -> Result<Sample, String> {
        if every == 0 {
            return Err("every must be at least 1".to_string());
        }
        Ok(Sample {
            every,
            n: 0,
            rng: None,
        })
    }

    /// Keeps each element with probability `1 / every`, drawn from a
    /// generator seeded with `seed` (the same seed keeps the same elements).
    pub fn random(every: u64, seed: u64) -> Result<Sample, String> {
        let mut s = Sample::every(every)?;
        s.rng = Some(SplitMix64::new(seed));
        Ok(s)
    }
}

impl Processor for Sample {
    fn drop_reason(&self) -> &'static str {
        "sampled out"
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        let rng = self.rng.as_ref().map_or(0, SplitMix64::state);
        Ok(StateWriter::new().u64(self.n).u64(rng).finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let mut r = StateReader::new(state);
        self.n = r.u64()?;
        let rng = r.u64()?;
        if self.rng.is_some() {
            self.rng = Some(SplitMix64::new(rng));
        }
        r.done()
    }

    #[inline]
    fn process(&mut self, _element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let keep = match &mut self.rng {
            Some(rng) => rng.below(self.every) == 0,
            None => {
                let keep = self.n.is_multiple_of(self.every);
                self.n += 1;
                keep
            }
        };
        Ok(if keep { Verdict::Emit } else { Verdict::Drop })
    }
}

params! {
    /// Parameters of `sample`.
    pub(crate) struct SampleParams {
        /// N: keep the 1st, (N+1)th, ... element
        every: u64,
        /// keep each with probability 1/N instead (default false)
        #[serde(default)]
        random: bool,
        /// seed of the random choice (default 0)
        #[serde(default)]
        seed: u64,
    }
}

pub(crate) fn build(p: SampleParams) -> Result<Sample, String> {
    if p.random {
        Sample::random(p.every, p.seed)
    } else {
        if p.seed != 0 {
            return Err("seed only applies with random = true".to_string());
        }
        Sample::every(p.every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::Harness;

    fn kept(s: &mut Sample, n: usize) -> Vec<usize> {
        let mut h = Harness::new(64);
        (0..n)
            .filter(|_| h.process(s, b"{}").verdict == Ok(Verdict::Emit))
            .collect()
    }

    #[test]
    fn one_in_n() {
        assert_eq!(kept(&mut Sample::every(3).unwrap(), 10), [0, 3, 6, 9]);
        assert_eq!(kept(&mut Sample::every(1).unwrap(), 3), [0, 1, 2]);
        assert!(Sample::every(0).is_err());
    }

    #[test]
    fn random_is_seeded_and_about_right() {
        let a = kept(&mut Sample::random(10, 42).unwrap(), 20_000);
        let b = kept(&mut Sample::random(10, 42).unwrap(), 20_000);
        assert_eq!(a, b);
        assert!((1_500..2_500).contains(&a.len()), "{}", a.len());
    }
}
