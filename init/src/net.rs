//! Minimal networking: bring an interface up. Bringing `lo` up is enough for the kernel to
//! give it 127.0.0.1/8 and ::1. Full networking (DHCP, static addresses, routes, DNS) comes
//! later.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// Errors configuring interfaces.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The interface name does not fit `IFNAMSIZ`.
    #[error("invalid interface name {0:?}")]
    Name(String),
    /// The control socket cannot be created.
    #[error("cannot create a control socket: {0}")]
    Socket(#[source] Errno),
    /// An interface ioctl failed.
    #[error("{op} on {iface} failed: {errno}")]
    Ioctl {
        /// Request.
        op: &'static str,
        /// Interface.
        iface: String,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// Sets `IFF_UP` on interface `name` (`SIOCGIFFLAGS` + `SIOCSIFFLAGS`, see netdevice(7)).
pub fn interface_up(name: &str) -> Result<(), NetError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(NetError::Name(name.to_string()));
    }
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(NetError::Socket)?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let err = |op: &'static str, errno| NetError::Ioctl {
        op,
        iface: name.to_string(),
        errno,
    };
    // SAFETY: `ifr` is a valid ifreq with a NUL-terminated name; the kernel fills in flags.
    let res = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) };
    Errno::result(res).map_err(|e| err("SIOCGIFFLAGS", e))?;
    // SAFETY: SIOCGIFFLAGS just initialised the `ifru_flags` member of the union.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: `ifr` is a valid ifreq; the kernel only reads it.
    let res = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) };
    Errno::result(res).map_err(|e| err("SIOCSIFFLAGS", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(interface_up(""), Err(NetError::Name(_))));
        assert!(matches!(
            interface_up("a-name-much-too-long"),
            Err(NetError::Name(_))
        ));
    }
}
