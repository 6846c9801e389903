//! A run's checkpoint coordinator: the sources that listen for completed
//! checkpoints (`Source::commits`), and checkpoint 0 of a fresh run.

use crate::checkpoint::{self, CheckpointSettings, Coordinator, Listener, Snapshot};
use crate::runtime::node;
use crate::runtime::worker::Worker;
use crate::stage::Stage;
use crate::topology::decl::NodeDecl;

/// The coordinator a run needs, if any, and whether a source commits.
///
/// Sources that commit what the sinks finished with (Kafka offsets) listen
/// for completed checkpoints; without `[engine] checkpoint` the pipeline
/// runs barriers for them alone, at their interval, and writes nothing.
pub(super) fn coordinator(
    decls: &mut [Option<NodeDecl>],
    settings: Option<&CheckpointSettings>,
    shape: u64,
    last_id: u64,
) -> (Option<(Coordinator, checkpoint::Barriers)>, bool) {
    let mut listeners = Vec::new();
    let mut commit_interval_ms: Option<u64> = None;
    for (i, d) in decls.iter_mut().enumerate() {
        let Some(d) = d else { continue };
        if let Stage::Source(s) = &mut d.stage {
            if let Some(c) = s.commits() {
                commit_interval_ms =
                    Some(commit_interval_ms.map_or(c.interval_ms, |m| m.min(c.interval_ms)));
                let mut on_complete = c.on_complete;
                listeners.push(Listener {
                    node: i,
                    on_complete: Box::new(move |id, state: &[u8]| {
                        // The node's own part wraps the stage's.
                        match node::decode_state(state) {
                            Ok((_, _, _, stage)) => on_complete(id, stage),
                            Err(e) => log::error!("checkpoint {id}: unreadable source state: {e}"),
                        }
                    }),
                });
            }
        }
    }
    let commits = commit_interval_ms.is_some();
    let coordinator = match (settings, commit_interval_ms) {
        (None, None) => None,
        (c, interval) => Some(Coordinator::new(
            c.map(|c| c.dir.clone()),
            c.map_or(interval.unwrap_or(1000), |c| c.interval_ms),
            decls.iter().flatten().map(|d| d.name.clone()).collect(),
            shape,
            last_id,
            listeners,
        )),
    };
    (coordinator, commits)
}

/// A fresh checkpointed run first writes checkpoint 0: every stage as it
/// starts (a sink's file length before it writes), so that a crash before
/// the first periodic checkpoint resumes from the start instead of
/// appending to a partial output. Problems go to `errors`.
pub(super) fn write_zero(
    c: &CheckpointSettings,
    shape: u64,
    workers: &mut [Worker],
    errors: &mut Vec<String>,
) {
    let mut states: Vec<(usize, String, Vec<u8>)> = Vec::new();
    for node in workers.iter_mut().flat_map(|w| w.nodes.iter_mut()) {
        match node.initial_state() {
            Ok(s) => states.push((node.info.index, node.info.name.clone(), s)),
            Err(e) => errors.push(format!(
                "stage '{}': initial checkpoint: {e}",
                node.info.name
            )),
        }
    }
    states.sort_by_key(|(i, _, _)| *i);
    let zero = Snapshot {
        id: 0,
        unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        shape,
        nodes: states.into_iter().map(|(_, n, s)| (n, s)).collect(),
    };
    if errors.is_empty() {
        if let Err(e) = checkpoint::write_snapshot(&c.dir, &zero) {
            errors.push(format!(
                "cannot write checkpoint 0 to {}: {e}",
                c.dir.display()
            ));
        }
    }
}
