/// `--uid` and `--gid` as decisions, without system calls: a value names a user or group
/// (`Principal`), is resolved against a user database (`UserDirectory`, the system's in
/// SystemUsers.swift, a table in the tests) into the identity to run as (`Identity`), and
/// that identity compared with the process's credentials says what the master does
/// (`PrivilegeDrop`). The drop itself is in DropPrivileges.swift.
///
/// Everything is decided at start, before the master binds: a bad name, or a user that a
/// process which is not root cannot become, stops Apus with one line before anything
/// listens. A graceful reload goes through the same decision and may not ask for a change
/// (the master has no root left to make it, or would give up root mid-life).

/// A `--uid` or `--gid` value: a number when it is all digits (as uWSGI and Gunicorn read
/// it), else a name to look up.
public enum Principal: Equatable, Sendable {
    case number(UInt32)
    case name(String)

    /// `option` names the option in the error ("--uid").
    public static func parse(_ raw: String, option: String) throws(PrivilegeFailure) -> Principal {
        guard !raw.isEmpty, raw.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return .name(raw)
        }
        // (uid_t)-1 means "unchanged" to setresuid and chown: never an identity.
        guard let n = UInt32(raw), n != UInt32.max else { throw PrivilegeFailure("\(option): \(raw) is out of range") }
        return .number(n)
    }
}

/// One line, naming the option.
public struct PrivilegeFailure: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What the system knows of users and groups. `nil`: no such entry.
public protocol UserDirectory {
    /// The user's uid and primary gid.
    func user(named name: String) throws(PrivilegeFailure) -> (uid: UInt32, gid: UInt32)?
    /// The primary gid and name of the user with this uid.
    func user(id: UInt32) throws(PrivilegeFailure) -> (name: String, gid: UInt32)?
    func group(named name: String) throws(PrivilegeFailure) -> UInt32?
    /// The group's name, for log lines.
    func group(id: UInt32) throws(PrivilegeFailure) -> String?
}

/// Who to run as: a uid (nil with `--gid` alone: the user stays) and the one group, also
/// the only supplementary group. The texts are for log lines.
public struct Identity: Equatable, Sendable {
    public var uid: UInt32?
    public var gid: UInt32
    public var user: String
    public var group: String

    public init(uid: UInt32?, gid: UInt32, user: String = "", group: String = "") {
        self.uid = uid
        self.gid = gid
        self.user = user
        self.group = group
    }

    /// "user www (uid 33), group www (gid 33)"; the group alone with `--gid` alone.
    public var described: String {
        let g = group.isEmpty ? "gid \(gid)" : "group \(group) (gid \(gid))"
        guard let uid else { return g }
        return (user.isEmpty ? "uid \(uid)" : "user \(user) (uid \(uid))") + ", " + g
    }

    /// `--uid` and `--gid` resolved: names looked up, a number taken as it is. With `--uid`
    /// and no `--gid`, the group is the user's primary group; a uid with no passwd entry
    /// has none, and keeping the current group (root's, as a rule) would defeat the drop.
    public static func resolve(uid: String?, gid: String?, in directory: UserDirectory) throws(PrivilegeFailure) -> Identity? {
        guard uid != nil || gid != nil else { return nil }
        var identity = Identity(uid: nil, gid: 0)
        var primary: UInt32?
        if let uid {
            switch try Principal.parse(uid, option: "--uid") {
            case let .name(name):
                guard let entry = try directory.user(named: name) else { throw PrivilegeFailure("--uid: no such user \(quoted(name))") }
                (identity.uid, identity.user, primary) = (entry.uid, name, entry.gid)
            case let .number(n):
                let entry = try directory.user(id: n)
                (identity.uid, identity.user, primary) = (n, entry?.name ?? "", entry?.gid)
            }
        }
        if let gid {
            switch try Principal.parse(gid, option: "--gid") {
            case let .name(name):
                guard let n = try directory.group(named: name) else { throw PrivilegeFailure("--gid: no such group \(quoted(name))") }
                (identity.gid, identity.group) = (n, name)
            case let .number(n):
                (identity.gid, identity.group) = (n, try directory.group(id: n) ?? "")
            }
        } else if let primary {
            (identity.gid, identity.group) = (primary, try directory.group(id: primary) ?? "")
        } else {
            throw PrivilegeFailure("--uid: uid \(identity.uid ?? 0) has no passwd entry to take its group from; give --gid")
        }
        return identity
    }
}

/// The process's ids as the kernel has them: real, effective and saved, and the
/// supplementary groups.
public struct Credentials: Equatable, Sendable {
    public var uid: UInt32, euid: UInt32, suid: UInt32
    public var gid: UInt32, egid: UInt32, sgid: UInt32
    public var groups: [UInt32]

    public init(uid: UInt32, euid: UInt32, suid: UInt32, gid: UInt32, egid: UInt32, sgid: UInt32, groups: [UInt32]) {
        (self.uid, self.euid, self.suid, self.gid, self.egid, self.sgid, self.groups) = (uid, euid, suid, gid, egid, sgid, groups)
    }

    public var isRoot: Bool { euid == 0 }

    /// Already runs as `identity`: every uid (when it names one) and every gid match, and,
    /// for root, no other supplementary group is left (a process that is not root cannot
    /// drop those, so they are not asked of it).
    func holds(_ identity: Identity) -> Bool {
        if let u = identity.uid, [uid, euid, suid].contains(where: { $0 != u }) { return false }
        if [gid, egid, sgid].contains(where: { $0 != identity.gid }) { return false }
        return !isRoot || groups.allSatisfy { $0 == identity.gid }
    }
}

/// What the master does about privileges.
public enum PrivilegeDrop: Equatable, Sendable {
    /// No `--uid` or `--gid`.
    case none
    /// The process already is that user and group (an upgrade in place re-executed the
    /// master after its drop, or Apus was started as that user).
    case already(Identity)
    /// Root becomes `identity` once the sockets are bound: setgroups, setgid, setuid.
    case change(Identity)

    /// The decision for `target` (nil: no option given) with the process's `current`
    /// credentials. Throws when only root could make the change and the process is not root.
    public static func decide(_ target: Identity?, current: Credentials) throws(PrivilegeFailure) -> PrivilegeDrop {
        guard let target else { return .none }
        if current.holds(target) { return .already(target) }
        if current.isRoot { return .change(target) }
        if let uid = target.uid, [current.uid, current.euid, current.suid].contains(where: { $0 != uid }) {
            throw PrivilegeFailure("--uid: cannot become \(target.described): apus runs as uid \(current.euid), not root")
        }
        throw PrivilegeFailure("--gid: cannot become \(target.described): apus runs as gid \(current.egid), uid \(current.euid), not root")
    }

    /// Why a graceful reload or an upgrade in place with this decision is refused, or nil.
    /// Both run in the master as it is: with root gone nothing can change, and a master
    /// still root gives it up only at start, before any worker runs (a dropped master
    /// could not signal the old generation's root workers, nor take root back if the new
    /// generation failed).
    public var refusedOnReload: String? {
        guard case let .change(target) = self else { return nil }
        let option = target.uid == nil ? "--gid" : "--uid"
        return "\(option): privileges change only at start, not on a reload or an upgrade in place: restart apus to run as \(target.described)"
    }
}

private func quoted(_ s: String) -> String { "\"\(s)\"" }
