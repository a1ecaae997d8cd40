//! Who is calling: the peer's uid, gid and pid from the Unix socket (SO_PEERCRED, through
//! tokio's `peer_cred`), its supplementary groups from `/proc/PID/status`, and the check of
//! mutating methods against `access.allowed_groups`.

use std::ffi::CString;

/// The caller of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A Unix-socket caller, as the kernel vouches for it.
    Local {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
        /// Supplementary groups (read from `/proc` when the pid is known).
        groups: Vec<u32>,
    },
    /// A loopback TCP caller: no credentials.
    Tcp(std::net::SocketAddr),
    /// Credentials could not be read.
    Unknown,
}

impl Peer {
    /// The credentials of a Unix-socket peer.
    pub fn of_unix(stream: &tokio::net::UnixStream) -> Peer {
        match stream.peer_cred() {
            Ok(cred) => Peer::Local {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
                groups: cred.pid().map(supplementary_groups).unwrap_or_default(),
            },
            Err(_) => Peer::Unknown,
        }
    }

    /// Whether the caller is in one of the groups `allowed` (group ids).
    fn in_groups(&self, allowed: &[u32]) -> bool {
        match self {
            Peer::Local { gid, groups, .. } => {
                allowed.contains(gid) || groups.iter().any(|g| allowed.contains(g))
            }
            Peer::Tcp(_) | Peer::Unknown => false,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Local { uid, gid, pid, .. } => match pid {
                Some(pid) => write!(f, "uid={uid} gid={gid} pid={pid}"),
                None => write!(f, "uid={uid} gid={gid} pid=?"),
            },
            Peer::Tcp(addr) => write!(f, "tcp {addr}"),
            Peer::Unknown => f.write_str("unknown peer"),
        }
    }
}

/// The supplementary groups of process `pid` (`Groups:` in `/proc/PID/status`).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The id of group `name` (or a numeric id given as text), if the machine has it.
pub fn group_id(name: &str) -> Option<u32> {
    if let Ok(id) = name.parse::<u32>() {
        return Some(id);
    }
    let name = CString::new(name).ok()?;
    let mut group = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getgrnam_r writes into `group` and
    // `buffer` (of the stated length) only, and sets `found` to `group` or null.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            group.as_mut_ptr(),
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: `found` is non-null, so getgrnam_r filled `group`.
    Some(unsafe { group.assume_init() }.gr_gid)
}

/// `access.allowed_groups`, resolved: who may call mutating methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// `false`: no list was configured, everyone is admitted.
    restricted: bool,
    /// The ids of the listed groups that exist (unknown names admit nobody).
    gids: Vec<u32>,
}

impl AllowList {
    pub fn from_names(names: &[String]) -> AllowList {
        AllowList {
            restricted: !names.is_empty(),
            gids: names.iter().filter_map(|name| group_id(name)).collect(),
        }
    }

    pub fn admits(&self, peer: &Peer) -> bool {
        !self.restricted || peer.in_groups(&self.gids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_resolve_and_admission_follows_them() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-medcard"), None);
        let peer = Peer::Local {
            uid: 1000,
            gid: 1000,
            pid: None,
            groups: vec![27],
        };
        assert!(AllowList::from_names(&[]).admits(&peer));
        assert!(AllowList::from_names(&["27".into()]).admits(&peer));
        assert!(!AllowList::from_names(&["5".into()]).admits(&peer));
        let nobody = AllowList::from_names(&["no-such-group-medcard".into()]);
        assert!(!nobody.admits(&peer));
        assert!(!nobody.admits(&Peer::Unknown));
    }
}
