//! Writing a file so that its readers never see half of it: the file sink
//! (`--output-file`) and `install-credential-provider` (the kubelet's binary
//! and config on a node) both write this way, and the installer links the
//! binary's further names this way.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// What a successful write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    Created,
    Updated,
    /// The destination already held this exact content.
    Unchanged,
}

/// Writes `bytes` to `path` with `mode` atomically, or leaves the file alone
/// when it already holds them with that mode: a temporary file in the same
/// directory, fsync, then rename over the target (and fsync the directory),
/// so a reader sees the old content or the new one and never half of one.
/// On failure the temporary file is removed and `path` is untouched.
pub(crate) fn write_atomically(path: &Path, mode: u32, bytes: &[u8]) -> std::io::Result<WriteOutcome> {
    let existed = match fs::read(path) {
        Ok(current) if current == bytes && permissions(path)? == mode => return Ok(WriteOutcome::Unchanged),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let (dir, tmp) = temporary(path)?;
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have cleared bits the user asked for.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(if existed { WriteOutcome::Updated } else { WriteOutcome::Created })
}

/// Makes `path` another name of the file `original` (a hard link; both in
/// one directory, so on one filesystem) atomically, or leaves it alone when
/// it already is one: a temporary link beside it, renamed over `path`, so a
/// reader finds the old file or `original`, never nothing. Whatever `path`
/// was (another file, an old copy) is replaced; a name of the same file is
/// unchanged, whatever its content, which is `original`'s to check.
pub(crate) fn link_atomically(original: &Path, path: &Path) -> std::io::Result<WriteOutcome> {
    let target = fs::metadata(original)?;
    let existed = match fs::symlink_metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == (target.dev(), target.ino()) => return Ok(WriteOutcome::Unchanged),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let (dir, tmp) = temporary(path)?;
    let linked = (|| {
        fs::hard_link(original, &tmp)?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    // rename(2) does nothing when both names are already the same file (if
    // `path` became one meanwhile), leaving the temporary name behind.
    let _ = fs::remove_file(&tmp);
    linked?;
    Ok(if existed { WriteOutcome::Updated } else { WriteOutcome::Created })
}

/// `path`'s directory, and a fresh temporary name in it.
fn temporary(path: &Path) -> std::io::Result<(&Path, PathBuf)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| std::io::Error::other("the output path has no file name"))?;
    let tmp =
        dir.join(format!(".{}.regcred-{}-{}", file_name.to_string_lossy(), std::process::id(), fastrand::u32(..)));
    Ok((dir, tmp))
}

fn permissions(path: &Path) -> std::io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_the_mode_then_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(write_atomically(&path, 0o640, b"a").unwrap(), WriteOutcome::Created);
        assert_eq!((fs::read(&path).unwrap(), permissions(&path).unwrap()), (b"a".to_vec(), 0o640));
        assert_eq!(write_atomically(&path, 0o640, b"a").unwrap(), WriteOutcome::Unchanged);
        assert_eq!(write_atomically(&path, 0o600, b"a").unwrap(), WriteOutcome::Updated, "a new mode is a change");
        assert_eq!(permissions(&path).unwrap(), 0o600);
        assert_eq!(write_atomically(&path, 0o600, b"b").unwrap(), WriteOutcome::Updated);
        assert_eq!(fs::read(&path).unwrap(), b"b");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")], "no temporary files left behind");
    }

    #[test]
    fn links_atomically_then_leaves_a_link_to_the_same_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (original, name) = (dir.path().join("regcred"), dir.path().join("regcred-ecr"));
        write_atomically(&original, 0o755, b"v1").unwrap();
        let inode = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
        assert_eq!(link_atomically(&original, &name).unwrap(), WriteOutcome::Created);
        assert_eq!(inode(&name), inode(&original), "one file, two names");
        assert_eq!(permissions(&name).unwrap(), 0o755);
        assert_eq!(link_atomically(&original, &name).unwrap(), WriteOutcome::Unchanged);

        // A new original (the next version, written atomically) is a new
        // file: the other name is linked to it again.
        write_atomically(&original, 0o755, b"v2").unwrap();
        assert_ne!(inode(&name), inode(&original));
        assert_eq!(fs::read(&name).unwrap(), b"v1");
        assert_eq!(link_atomically(&original, &name).unwrap(), WriteOutcome::Updated);
        assert_eq!((inode(&name), fs::read(&name).unwrap()), (inode(&original), b"v2".to_vec()));

        // Another file under the name is replaced.
        fs::remove_file(&name).unwrap();
        fs::write(&name, b"#!/bin/sh\n").unwrap();
        assert_eq!(link_atomically(&original, &name).unwrap(), WriteOutcome::Updated);
        assert_eq!(inode(&name), inode(&original));
        let mut names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["regcred", "regcred-ecr"], "no temporary names left behind");

        // Without the original, nothing is linked and the name is kept.
        let missing = dir.path().join("missing");
        assert!(link_atomically(&missing, &name).is_err());
        assert_eq!(fs::read(&name).unwrap(), b"v2");
    }
}
