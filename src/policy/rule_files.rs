//! Which files a rules path names: the one rule file, or every `*.toml` in
//! a directory, sorted by name. The guardrails, the masking rules and the
//! hot-reload watcher read the same list.

use std::io;
use std::path::{Path, PathBuf};

/// The rule files `path` names, in the order they are read.
pub fn list(path: &Path) -> io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "toml") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// The rule files `path` names with their texts; on failure, the path
/// that could not be read (the directory or one file) and why.
pub fn read(path: &Path) -> Result<Vec<(PathBuf, String)>, (PathBuf, io::Error)> {
    let files = list(path).map_err(|e| (path.to_path_buf(), e))?;
    files
        .into_iter()
        .map(|f| match std::fs::read_to_string(&f) {
            Ok(text) => Ok((f, text)),
            Err(e) => Err((f, e)),
        })
        .collect()
}

/// `(path, text)` pairs as the parsers take them.
pub fn as_refs(sources: &[(PathBuf, String)]) -> Vec<(&Path, &str)> {
    sources
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_names_its_toml_files_in_order_and_a_file_itself() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.toml", "a.toml", "notes.txt"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let texts = read(dir.path()).unwrap();
        let names: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
        let one = dir.path().join("notes.txt");
        assert_eq!(list(&one).unwrap(), vec![one.clone()]);
        let missing = dir.path().join("missing.toml");
        let (at, _) = read(&missing).unwrap_err();
        assert_eq!(at, missing);
    }
}
