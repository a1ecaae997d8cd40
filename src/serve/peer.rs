//! Who is calling: the peer's uid, gid and pid from the Unix socket (SO_PEERCRED, through
//! tokio's `peer_cred`), its supplementary groups from `/proc/PID/status`, and the check of
//! mutating methods against `access.allowed_groups`. The other way round, [`server_uid`]:
//! who serves a socket a client connected to (the client's check before it sends anything).

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
    /// A caller of the web endpoint (`serve::web`): what its token grants.
    Web {
        addr: std::net::SocketAddr,
        grant: Grant,
    },
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

    /// The transport the caller came over, as the metrics' label: `unix`, `tcp`, `web`.
    pub fn transport(&self) -> &'static str {
        match self {
            Peer::Local { .. } | Peer::Unknown => "unix",
            Peer::Tcp(_) => "tcp",
            Peer::Web { .. } => "web",
        }
    }

    /// Whether the caller is in one of the groups `allowed` (group ids).
    fn in_groups(&self, allowed: &[u32]) -> bool {
        match self {
            Peer::Local { gid, groups, .. } => {
                allowed.contains(gid) || groups.iter().any(|g| allowed.contains(g))
            }
            Peer::Tcp(_) | Peer::Web { .. } | Peer::Unknown => false,
        }
    }
}

/// What a web caller may do, by the token it presented (docs/web.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// No token: the methods that change nothing.
    ReadOnly,
    /// The kiosk page's token: reading, the PIN, a scanned 医保电子凭证, self-service
    /// registration, and paying the bills the HIS offered (`bill.preview`, then
    /// `settle.commit` of that preview).
    Kiosk,
    /// The HIS's client token: every method.
    Full,
}

impl Grant {
    /// The mutating methods the kiosk token opens.
    pub const KIOSK_METHODS: [&str; 6] = [
        "card.verify_pin",
        "card.refresh",
        "credential.present",
        "visit.register",
        "bill.preview",
        "settle.commit",
    ];

    /// Whether this grant opens the mutating method `method`.
    pub fn opens(self, method: &str) -> bool {
        match self {
            Grant::Full => true,
            Grant::Kiosk => Grant::KIOSK_METHODS.contains(&method),
            Grant::ReadOnly => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grant::ReadOnly => "no token",
            Grant::Kiosk => "kiosk token",
            Grant::Full => "client token",
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
            Peer::Web { addr, grant } => write!(f, "web {addr} ({})", grant.as_str()),
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

/// The uid of the process that serves the socket `stream` is connected to (SO_PEERCRED:
/// the credentials of the process that called `listen`).
pub fn server_uid(stream: &impl std::os::fd::AsRawFd) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for getsockopt's ucred-sized output.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The uid of user `name` (or a numeric id given as text), if the machine has it.
pub fn user_id(name: &str) -> Option<u32> {
    id_by_name(name, libc::getpwnam_r, |user: &libc::passwd| user.pw_uid)
}

/// The id of group `name` (or a numeric id given as text), if the machine has it.
pub fn group_id(name: &str) -> Option<u32> {
    id_by_name(name, libc::getgrnam_r, |group: &libc::group| group.gr_gid)
}

/// The signature `getpwnam_r` and `getgrnam_r` share.
type LookUpByName<T> = unsafe extern "C" fn(
    *const libc::c_char,
    *mut T,
    *mut libc::c_char,
    libc::size_t,
    *mut *mut T,
) -> libc::c_int;

/// A numeric id given as text, or the id of the entry `look_up` finds for `name`.
fn id_by_name<T>(name: &str, look_up: LookUpByName<T>, id: fn(&T) -> u32) -> Option<u32> {
    if let Ok(id) = name.parse::<u32>() {
        return Some(id);
    }
    let name = CString::new(name).ok()?;
    let mut entry = std::mem::MaybeUninit::<T>::uninit();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut T = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the *nam_r function writes into `entry`
    // and `buffer` (of the stated length) only, and sets `found` to `entry` or null.
    let rc = unsafe {
        look_up(
            name.as_ptr(),
            entry.as_mut_ptr(),
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: `found` is non-null, so the lookup filled `entry` (whose strings point into
    // `buffer`, still alive here).
    Some(id(unsafe { entry.assume_init_ref() }))
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

    /// Whether `peer` is a member of one of the listed groups (never when none is listed):
    /// who may take the connections `socket.reserved_for_allowed_groups` keeps.
    pub fn lists(&self, peer: &Peer) -> bool {
        self.restricted && peer.in_groups(&self.gids)
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
        assert!(!AllowList::from_names(&[]).lists(&peer));
        assert!(AllowList::from_names(&["27".into()]).lists(&peer));
        assert!(!AllowList::from_names(&["5".into()]).lists(&peer));
    }

    #[test]
    fn users_resolve() {
        assert_eq!(user_id("root"), Some(0));
        assert_eq!(user_id("4242"), Some(4242));
        assert_eq!(user_id("no-such-user-medcard"), None);
    }
}
