#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
//! `--static DIR`: serve a directory (a dashboard page, icons) next to the streams.
//!
//! Only files inside DIR are ever served, and never a dotfile (`.git`, `.env`, `.htpasswd`) or
//! anything in a dot-directory, asked for directly or through a symlink (`404`). The URL path is percent-decoded first (so `%2e%2e`
//! is seen as `..`), any `..` segment is refused outright, and the final path is resolved with
//! symlinks followed and must still lie inside DIR, so a symlink pointing out of it is refused
//! too. Sans-IO apart from the file system lookups, so it is unit-tested here.

use std::path::{Path, PathBuf};

/// Why a path was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such file (or a directory without `index.html`): 404.
    NotFound,
    /// A traversal attempt or a path leaving the directory: 403.
    Forbidden,
}

/// The file under `root` (already canonical) that `url_path` names.
pub fn resolve(root: &Path, url_path: &str) -> Result<PathBuf, Refusal> {
    let decoded = percent_decode(url_path).ok_or(Refusal::Forbidden)?;
    let text = String::from_utf8(decoded).map_err(|_| Refusal::Forbidden)?;
    if text.contains('\0') || text.contains('\\') {
        return Err(Refusal::Forbidden);
    }
    let mut path = root.to_path_buf();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(Refusal::Forbidden),
            // Dotfiles (.git, .htpasswd, .env) are never content meant for viewers.
            s if s.starts_with('.') => return Err(Refusal::NotFound),
            s => path.push(s),
        }
    }
    if path.is_dir() {
        path.push("index.html");
    }
    let real = path.canonicalize().map_err(|_| Refusal::NotFound)?;
    let Ok(inside) = real.strip_prefix(root) else {
        return Err(Refusal::Forbidden);
    };
    // Also through a symlink: no component of what is served may be a dotfile.
    if inside
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
    {
        return Err(Refusal::NotFound);
    }
    if !real.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok(real)
}

/// `%XX` decoding; `None` for a malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut rest = s.as_bytes();
    let mut out = Vec::with_capacity(rest.len());
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail
                .get(..2)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = tail.get(2..).unwrap_or_default();
        } else {
            out.push(b);
            rest = tail;
        }
    }
    Some(out)
}

/// Content type by file extension; the common web files, else a download.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused_and_files_inside_are_served() {
        let base = std::env::temp_dir().join(format!("mjpeg-relay-static-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("www");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::write(root.join("sub/a.css"), "x").unwrap();
        std::fs::write(base.join("secret.txt"), "no").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt")).unwrap();
        let root = root.canonicalize().unwrap();
        assert_eq!(resolve(&root, "/").unwrap(), root.join("index.html"));
        assert_eq!(
            resolve(&root, "/sub/a.css").unwrap(),
            root.join("sub/a.css")
        );
        assert_eq!(
            resolve(&root, "/sub/%61.css").unwrap(),
            root.join("sub/a.css")
        );
        for bad in [
            "/../secret.txt",
            "/sub/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/link.txt",
            "/sub%5c..%5csecret.txt",
            "/%00",
            "/%zz",
        ] {
            assert_eq!(resolve(&root, bad), Err(Refusal::Forbidden), "{bad}");
        }
        assert_eq!(resolve(&root, "/nope.html"), Err(Refusal::NotFound));
        assert_eq!(resolve(&root, "/sub"), Err(Refusal::NotFound));
        let _ = std::fs::remove_dir_all(&base);
    }
}
