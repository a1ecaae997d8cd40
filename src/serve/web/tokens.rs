//! The web endpoint's client tokens: the HIS's (every method) and the kiosk page's
//! (narrower), each in a file only the service's user and group may read. A missing file is
//! made at the first start with 32 random bytes (hex) and mode 0640; a file other users may
//! read, or an empty one, stops the start: anyone on the machine could call as the HIS.

use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A token as read from its file; compared in constant time, never logged.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Whether `presented` is this token (every byte compared, whatever differs first).
    pub fn matches(&self, presented: &str) -> bool {
        let (ours, theirs) = (self.0.as_bytes(), presented.as_bytes());
        ours.len() == theirs.len()
            && ours
                .iter()
                .zip(theirs)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }

    /// The token's text (for the demo's kiosk URL and the tests).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A token file that cannot be used: the path and why, in the operator's terms.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "{path} may be read by other users (mode {mode:04o}): anyone on this machine could \
         call medcard as the HIS; make it chmod 0640 (owner medcard, group the HIS's)",
        path = path.display()
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("{path} is empty: put a token in it (or delete it: medcard makes one)", path = path.display())]
    Empty { path: PathBuf },
    #[error("cannot read or make the token file {path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// The token in `path`, made when the file is missing.
pub fn load_or_make(path: &Path) -> Result<Token, TokenError> {
    let io_error = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.mode() & 0o777;
            if mode & 0o007 != 0 {
                return Err(TokenError::Readable {
                    path: path.to_owned(),
                    mode,
                });
            }
            let text = std::fs::read_to_string(path).map_err(io_error)?;
            let token = text.trim();
            if token.is_empty() {
                return Err(TokenError::Empty {
                    path: path.to_owned(),
                });
            }
            Ok(Token(token.to_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => make(path).map_err(io_error),
        Err(e) => Err(io_error(e)),
    }
}

/// A new token written to a new file at `path` (0640; its directory made 0750 if missing).
fn make(path: &Path) -> io::Result<Token> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o750)
            .create(dir)?;
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let token = hex::encode(random);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "made a new web client token");
    Ok(Token(token))
}

#[cfg(test)]
impl Token {
    pub fn for_tests(text: &str) -> Token {
        Token(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_token_is_made_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("medcard-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("web.token");
        let made = load_or_make(&path).expect("made");
        let mode = std::fs::metadata(&path).expect("file").mode() & 0o777;
        let again = load_or_make(&path).expect("read");
        assert_eq!(mode, 0o640);
        assert_eq!(made.expose().len(), 64);
        assert!(again.matches(made.expose()));
        assert!(!again.matches("0"));
        assert!(!again.matches(&made.expose().replace(&made.expose()[..1], "x")));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = load_or_make(&path).map(|_| ()).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(refused.contains("other users"), "{refused}");
    }
}
