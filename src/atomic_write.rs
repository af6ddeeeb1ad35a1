//! Writing a file so that its readers never see half of it: the file sink
//! (`--output-file`) and `install-credential-provider` (the kubelet's binary
//! and config on a node) both write this way.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

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
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| std::io::Error::other("the output path has no file name"))?;
    let tmp =
        dir.join(format!(".{}.regcred-{}-{}", file_name.to_string_lossy(), std::process::id(), fastrand::u32(..)));
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
}
