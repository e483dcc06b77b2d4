//! `write_file` and `read_file`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;

use super::OpError;
use crate::protocol::{Empty, ReadFileOutput};

fn absolute(path: &str) -> Result<&Path, OpError> {
    let p = Path::new(path);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(OpError::InvalidArgument(format!(
            "path must be absolute: {path:?}"
        )))
    }
}

/// Writes `data` (base64) to `path` with `mode` (default 0o644), creating parent directories.
pub fn write_file(path: &str, data: &str, mode: Option<u32>) -> Result<Empty, OpError> {
    let path = absolute(path)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| OpError::InvalidArgument(format!("data is not base64: {e}")))?;
    let mode = mode.unwrap_or(0o644);
    let err = |what, source| OpError::File {
        what,
        path: PathBuf::from(path),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| err("cannot create the parent of", e))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| err("cannot open", e))?;
    file.write_all(&bytes).map_err(|e| err("cannot write", e))?;
    // An existing file keeps its old mode through open(2); set it explicitly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| err("cannot chmod", e))?;
    Ok(Empty {})
}

/// Reads the whole of `path`, returned base64.
pub fn read_file(path: &str) -> Result<ReadFileOutput, OpError> {
    let path = absolute(path)?;
    let bytes = fs::read(path).map_err(|source| OpError::File {
        what: "cannot read",
        path: path.into(),
        source,
    })?;
    Ok(ReadFileOutput {
        data: base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips_with_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/file");
        let path = path.to_str().unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(b"hello\0world");
        write_file(path, &data, Some(0o600)).unwrap();
        assert_eq!(
            fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_file(path).unwrap().data, data);
        assert!(matches!(
            read_file("relative"),
            Err(OpError::InvalidArgument(_))
        ));
        assert!(matches!(
            write_file(path, "%%%", None),
            Err(OpError::InvalidArgument(_))
        ));
        let missing = tmp.path().join("missing");
        let e = read_file(missing.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
