//! The checkpoint file: `checkpoint-<id>.ckpt` in the checkpoint directory.
//!
//! Layout (little-endian): the magic `DPCKPT`, the format version (u32),
//! the checkpoint id, its Unix time in ms and the pipeline's shape hash
//! (u64 each), the node count (u32), then per node its name and its state
//! (each a u64 length and the bytes), and last the FNV-1a 64 checksum of
//! everything before it.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::operators::util::fnv1a64;

/// The version written into new checkpoints; others are refused.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 6] = b"DPCKPT";
/// Checkpoints kept in the directory: the newest and the one before.
const KEEP: usize = 2;

/// A complete checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Its id (increasing over a pipeline's life).
    pub id: u64,
    /// When it completed, Unix ms.
    pub unix_ms: u64,
    /// The pipeline shape it belongs to ([`shape_hash`]).
    pub shape: u64,
    /// Node name and its state, for every node.
    pub nodes: Vec<(String, Vec<u8>)>,
}

impl Snapshot {
    /// The state of node `name`, if the checkpoint has it.
    pub fn state_of(&self, name: &str) -> Option<&[u8]> {
        self.nodes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.as_slice())
    }
}

/// A hash of what a checkpoint's states must match: node names and
/// components, and the edges between their ports.
pub fn shape_hash<'a>(
    nodes: impl Iterator<Item = (&'a str, &'a str)>,
    edges: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> u64 {
    let mut text = String::new();
    for (name, component) in nodes {
        text.push_str(&format!("node {name} {component}\n"));
    }
    for (from, port, to) in edges {
        text.push_str(&format!("edge {from}.{port} {to}\n"));
    }
    fnv1a64(text.as_bytes())
}

fn encode(s: &Snapshot) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    for v in [s.id, s.unix_ms, s.shape] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&(s.nodes.len() as u32).to_le_bytes());
    for (name, state) in &s.nodes {
        for part in [name.as_bytes(), state.as_slice()] {
            b.extend_from_slice(&(part.len() as u64).to_le_bytes());
            b.extend_from_slice(part);
        }
    }
    let sum = fnv1a64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Result<Snapshot, String> {
    if b.len() < MAGIC.len() + 4 + 24 + 4 + 8 || &b[..MAGIC.len()] != MAGIC {
        return Err("not a dataplane checkpoint".into());
    }
    let (body, sum) = b.split_at(b.len() - 8);
    if fnv1a64(body) != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
        return Err("checksum mismatch (a torn or corrupted file)".into());
    }
    let mut pos = MAGIC.len();
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = pos.checked_add(n).filter(|&e| e <= body.len());
        let part = end
            .map(|e| &body[pos..e])
            .ok_or_else(|| "truncated".to_string())?;
        pos += n;
        Ok(part)
    };
    let version = u32::from_le_bytes(take(4)?.try_into().expect("4"));
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads version {FORMAT_VERSION}"
        ));
    }
    let mut u64s = [0u64; 3];
    for v in &mut u64s {
        *v = u64::from_le_bytes(take(8)?.try_into().expect("8"));
    }
    let count = u32::from_le_bytes(take(4)?.try_into().expect("4"));
    let mut nodes = Vec::new();
    for _ in 0..count {
        let mut parts = [Vec::new(), Vec::new()];
        for p in &mut parts {
            let len = u64::from_le_bytes(take(8)?.try_into().expect("8"));
            *p = take(usize::try_from(len).map_err(|_| "truncated")?)?.to_vec();
        }
        let [name, state] = parts;
        let name = String::from_utf8(name).map_err(|_| "a node name is not UTF-8")?;
        nodes.push((name, state));
    }
    if pos != body.len() {
        return Err("trailing bytes".into());
    }
    Ok(Snapshot {
        id: u64s[0],
        unix_ms: u64s[1],
        shape: u64s[2],
        nodes,
    })
}

fn path_of(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("checkpoint-{id:020}.ckpt"))
}

/// Writes `s` into `dir` atomically (temporary file, fsync, rename, fsync
/// of the directory), then removes all but the newest [`KEEP`].
pub(crate) fn write(dir: &Path, s: &Snapshot) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = path_of(dir, s.id);
    let tmp = path.with_extension("ckpt.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&encode(s))?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    let listed = list(dir)?;
    for old in listed.iter().skip(KEEP) {
        let _ = fs::remove_file(&old.path);
    }
    Ok(path)
}

/// A checkpoint file found in a directory.
#[derive(Debug)]
pub struct Listed {
    /// Its id, from the file name.
    pub id: u64,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its contents, or why they cannot be used.
    pub snapshot: Result<Snapshot, String>,
}

/// Reads one checkpoint file.
pub fn read_file(path: &Path) -> Result<Snapshot, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    decode(&bytes)
}

/// The checkpoints in `dir`, newest first (a missing directory has none).
/// Leftover temporary files of an interrupted write are ignored.
pub fn list(dir: &Path) -> std::io::Result<Vec<Listed>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.strip_suffix(".ckpt"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let size = entry.metadata().map_or(0, |m| m.len());
        let snapshot = read_file(&path);
        found.push(Listed {
            id,
            path,
            size,
            snapshot,
        });
    }
    found.sort_by_key(|l| std::cmp::Reverse(l.id));
    Ok(found)
}

/// The newest usable checkpoint in `dir`: a corrupt newest one is skipped
/// (with a warning) for the one before it.
pub fn latest(dir: &Path) -> std::io::Result<Option<Snapshot>> {
    for l in list(dir)? {
        match l.snapshot {
            Ok(s) => return Ok(Some(s)),
            Err(e) => log::warn!("skipping checkpoint {}: {e}", l.path.display()),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty directory of the system's temp dir for one test.
    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dp-ckpt-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn snap(id: u64) -> Snapshot {
        Snapshot {
            id,
            unix_ms: 1_700_000_000_000 + id,
            shape: 42,
            nodes: vec![("f.a".into(), vec![1, 2, 3]), ("f.b".into(), Vec::new())],
        }
    }

    #[test]
    fn round_trips_and_keeps_the_last_two() {
        let dir = tempdir("keep");
        for id in 1..=4 {
            write(dir.as_path(), &snap(id)).unwrap();
        }
        let listed = list(dir.as_path()).unwrap();
        assert_eq!(listed.iter().map(|l| l.id).collect::<Vec<_>>(), vec![4, 3]);
        assert_eq!(latest(dir.as_path()).unwrap(), Some(snap(4)));
    }

    #[test]
    fn a_corrupt_newest_checkpoint_falls_back_to_the_one_before() {
        let dir = tempdir("corrupt");
        write(dir.as_path(), &snap(1)).unwrap();
        let p = write(dir.as_path(), &snap(2)).unwrap();
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&p, &bytes).unwrap();
        assert!(read_file(&p).unwrap_err().contains("checksum"));
        assert_eq!(latest(dir.as_path()).unwrap(), Some(snap(1)));
        // A torn write (a prefix) is refused too.
        fs::write(&p, &bytes[..10]).unwrap();
        assert!(read_file(&p).is_err());
    }

    #[test]
    fn a_missing_directory_has_no_checkpoint() {
        assert!(latest(Path::new("/nonexistent/dataplane/ckpt"))
            .unwrap()
            .is_none());
    }
}
