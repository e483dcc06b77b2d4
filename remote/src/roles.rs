//! Roles (who the caller is, from its client certificate) and classes (what a method needs,
//! from the role table in [`crate::table`]).
//!
//! As in Talos, a client certificate's subject Organization names its role: `O=reader`,
//! `O=operator`, `O=admin`. Roles nest: an operator may do what a reader may, an admin what
//! an operator may. `peer` is reserved for node-to-node calls (issue 22) and may do nothing
//! yet. A certificate with several role Organizations holds each of them (Talos's role
//! sets): a call is allowed when any of them allows it.

use std::fmt;

/// A caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads state: versions, lists, status, logs, events.
    Reader,
    /// Runs workloads: pull, import, create/start/kill/delete containers and tasks, reboot.
    Operator,
    /// Changes the node: upgrade, configuration reload, removal of namespaces, content and
    /// snapshots, GC, power-off.
    Admin,
    /// Another node of the fleet (issue 22: peers serving content); refused everything today.
    Peer,
}

impl Role {
    /// Every role, in the order of the docs' table.
    pub const ALL: [Role; 4] = [Role::Reader, Role::Operator, Role::Admin, Role::Peer];

    /// The role an Organization value names (exactly the lowercase name), if any.
    pub fn from_organization(o: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == o)
    }

    /// The role's name, as in certificates and messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Peer => "peer",
        }
    }

    /// Whether this role may call a method of `class`.
    pub fn allows(self, class: Class) -> bool {
        match (self, class) {
            (_, Class::Local) | (Role::Peer, _) => false,
            (Role::Admin, _) => true,
            (Role::Operator, c) => c <= Class::Operator,
            (Role::Reader, c) => c == Class::Reader,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a method needs: the least role allowed to call it, or never remotely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// reader, operator and admin.
    Reader,
    /// operator and admin; audited.
    Operator,
    /// admin only; audited.
    Admin,
    /// Never through the remote API (the shim's API: berthd's private channel to a container).
    Local,
}

impl Class {
    /// The class's name, as in the docs' table.
    pub fn name(self) -> &'static str {
        match self {
            Class::Reader => "reader",
            Class::Operator => "operator",
            Class::Admin => "admin",
            Class::Local => "local only",
        }
    }

    /// Whether calls of this class change the node, and so get an audit line.
    pub fn mutating(self) -> bool {
        matches!(self, Class::Operator | Class::Admin)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The roles a certificate holds (possibly none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(Vec<Role>);

impl Roles {
    /// The roles named by `organizations` (values that name no role are ignored).
    pub fn from_organizations<'a>(organizations: impl IntoIterator<Item = &'a str>) -> Roles {
        let mut v: Vec<Role> = organizations
            .into_iter()
            .filter_map(Role::from_organization)
            .collect();
        v.sort();
        v.dedup();
        Roles(v)
    }

    /// Exactly these roles.
    pub fn of(roles: &[Role]) -> Roles {
        Roles::from_organizations(roles.iter().map(|r| r.name()))
    }

    /// Whether any role allows `class`.
    pub fn allow(&self, class: Class) -> bool {
        self.0.iter().any(|r| r.allows(class))
    }

    /// The roles held.
    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for Roles {
    /// `admin`, `peer+reader`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.0.iter().map(|r| r.name()).collect();
        f.write_str(&names.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_peer_and_local_are_closed() {
        use Class::*;
        let expect = [
            (Role::Reader, [true, false, false, false]),
            (Role::Operator, [true, true, false, false]),
            (Role::Admin, [true, true, true, false]),
            (Role::Peer, [false, false, false, false]),
        ];
        for (role, allowed) in expect {
            for (class, want) in [Reader, Operator, Admin, Local].into_iter().zip(allowed) {
                assert_eq!(role.allows(class), want, "{role} {class}");
            }
        }
    }

    #[test]
    fn organizations_name_roles_exactly() {
        let r = Roles::from_organizations(["Admin", "berth", "reader", "reader"]);
        assert_eq!(r.to_string(), "reader");
        assert_eq!(Roles::from_organizations(["x"]).to_string(), "none");
        let both = Roles::from_organizations(["peer", "operator"]);
        assert_eq!(both.to_string(), "operator+peer");
        assert!(both.allow(Class::Operator) && !both.allow(Class::Admin));
        assert!(!Roles::default().allow(Class::Reader));
    }
}
