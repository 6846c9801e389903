//! Which core each stage runs on.
//!
//! One worker per core in use, never more: two busy threads sharing a core
//! turn a sub-microsecond hop into a scheduler quantum. Stages pinned by the
//! config go to their core's worker. The others, in topological order, are
//! cut into contiguous groups, one per usable core, so neighbouring stages
//! share a worker (and its cache) when there are more stages than cores.
//! When the stages do not divide evenly, the later groups take the extra
//! stages: the first group holds the sources, which write every payload
//! and push every fan-out, while sinks mostly count and release (gen ->
//! {sink0, sink1} on two cores puts both sinks beside each other, not one
//! beside the generator).

/// Assigns a core (an index into `cores`) to each stage.
///
/// `order` is a topological order of the stages; `pinned[s]` is the index in
/// `cores` a stage was pinned to by the config.
pub(crate) fn assign(order: &[usize], pinned: &[Option<usize>], cores: usize) -> Vec<usize> {
    let mut assignment = vec![0; pinned.len()];
    let free: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&s| pinned[s].is_none())
        .collect();
    let groups = free.len().min(cores).max(1);
    for (i, &s) in free.iter().enumerate() {
        // Balanced contiguous split: group sizes differ by at most one,
        // the larger groups last.
        assignment[s] = (i * groups + groups - 1) / free.len().max(1);
    }
    for (s, p) in pinned.iter().enumerate() {
        if let Some(c) = p {
            assignment[s] = *c;
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::assign;

    #[test]
    fn packs_contiguously_when_stages_exceed_cores() {
        let order = [0, 1, 2, 3, 4, 5];
        let got = assign(&order, &[None; 6], 2);
        assert_eq!(got, [0, 0, 0, 1, 1, 1]);
    }

    #[test]
    fn uneven_splits_put_the_extra_stages_last() {
        assert_eq!(assign(&[0, 1, 2], &[None; 3], 2), [0, 1, 1]);
        assert_eq!(assign(&[0, 1, 2, 3, 4], &[None; 5], 2), [0, 0, 1, 1, 1]);
        assert_eq!(assign(&[0, 1, 2, 3, 4], &[None; 5], 3), [0, 1, 1, 2, 2]);
    }

    #[test]
    fn one_core_per_stage_when_enough() {
        let got = assign(&[2, 0, 1], &[None; 3], 16);
        assert_eq!(got, [1, 2, 0]);
    }

    #[test]
    fn pinned_stages_stay() {
        let got = assign(&[0, 1, 2], &[None, Some(0), None], 2);
        assert_eq!(got[1], 0);
        assert_eq!(got[0], 0);
        assert_eq!(got[2], 1);
    }
}
