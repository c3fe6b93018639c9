//! `--static DIR`: a folder served at `/`, for the pages of an application (and GUN JS's browser
//! bundle, so a page can load it from fibergun itself). Only files under the folder are served:
//! paths are percent-decoded, and any `..`, hidden segment or link out of the folder is refused.

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

/// The largest file served, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why a path is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotServed {
    /// No such file (or a path that may not be asked for).
    NotFound,
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
}

/// The file under `root` for the URL path `url_path`: `index.html` for a folder.
pub fn resolve(root: &Path, url_path: &str) -> Result<PathBuf, NotServed> {
    let decoded = percent_decode_str(url_path)
        .decode_utf8()
        .map_err(|_| NotServed::NotFound)?;
    let mut path = root.to_path_buf();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') || segment.contains('\\') || segment.contains('\0') {
            return Err(NotServed::NotFound);
        }
        path.push(segment);
    }
    let root = root.canonicalize().map_err(|_| NotServed::NotFound)?;
    let mut file = path.canonicalize().map_err(|_| NotServed::NotFound)?;
    if !file.starts_with(&root) {
        return Err(NotServed::NotFound);
    }
    if file.is_dir() {
        file = file.join("index.html");
    }
    let meta = std::fs::metadata(&file).map_err(|_| NotServed::NotFound)?;
    if !meta.is_file() {
        return Err(NotServed::NotFound);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(NotServed::TooLarge);
    }
    Ok(file)
}

/// The content type for a file, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_folder_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(root.join("index.html"), "<p>home").unwrap();
        std::fs::write(root.join("app/index.html"), "<p>app").unwrap();
        std::fs::write(root.join("app/a b.js"), "1").unwrap();
        std::fs::write(root.join(".secret"), "x").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("link.txt")).unwrap();

        assert_eq!(
            resolve(&root, "/").unwrap(),
            root.canonicalize().unwrap().join("index.html")
        );
        assert!(resolve(&root, "/app/").unwrap().ends_with("app/index.html"));
        assert!(resolve(&root, "/app/a%20b.js")
            .unwrap()
            .ends_with("app/a b.js"));
        for bad in [
            "/../outside.txt",
            "/app/../../outside.txt",
            "/%2e%2e/outside.txt",
            "/.secret",
            "/link.txt",
            "/nope.html",
        ] {
            assert_eq!(resolve(&root, bad), Err(NotServed::NotFound), "{bad}");
        }
        assert_eq!(
            content_type(Path::new("x.JS")),
            "text/javascript; charset=utf-8"
        );
    }
}
