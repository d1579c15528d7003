#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusSys

/// The system's users and groups (passwd and group through NSS), and the process's own
/// credentials: what `Identity.resolve` and `PrivilegeDrop.decide` are given outside tests.
public struct SystemUsers: UserDirectory {
    public init() {}

    public func user(named name: String) throws(PrivilegeFailure) -> (uid: UInt32, gid: UInt32)? {
        try lookUp("--uid", name, { getpwnam_r(name, &$0, $1, $2, &$3) }) { (UInt32($0.pw_uid), UInt32($0.pw_gid)) }
    }

    public func user(id: UInt32) throws(PrivilegeFailure) -> (name: String, gid: UInt32)? {
        try lookUp("--uid", String(id), { getpwuid_r(uid_t(id), &$0, $1, $2, &$3) }) { (String(cString: $0.pw_name), UInt32($0.pw_gid)) }
    }

    public func group(named name: String) throws(PrivilegeFailure) -> UInt32? {
        try lookUp("--gid", name, { getgrnam_r(name, &$0, $1, $2, &$3) }) { UInt32($0.gr_gid) }
    }

    public func group(id: UInt32) throws(PrivilegeFailure) -> String? {
        try lookUp("--gid", String(id), { getgrgid_r(gid_t(id), &$0, $1, $2, &$3) }) { String(cString: $0.gr_name) }
    }

    /// One reentrant lookup (`call` fills an entry from a buffer), the buffer grown while
    /// the entry does not fit. No entry is nil; the errors glibc documents as "not found"
    /// are taken as that too, anything else (NSS down, out of memory) is a line.
    private func lookUp<Entry, Value>(_ option: String, _ key: String,
                                      _ call: (inout Entry, UnsafeMutablePointer<CChar>, Int, inout UnsafeMutablePointer<Entry>?) -> Int32,
                                      _ value: (Entry) -> Value) throws(PrivilegeFailure) -> Value? where Entry: ZeroInitializable {
        var size = 1024
        while true {
            var entry = Entry()
            var found: UnsafeMutablePointer<Entry>?
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            defer { buffer.deallocate() }
            let rc = call(&entry, buffer, size, &found)
            if rc == ERANGE && size < 1 << 20 { size *= 2; continue }
            if rc == 0 || [ENOENT, ESRCH, EBADF, EPERM].contains(rc) {
                return found == nil ? nil : value(entry)
            }
            throw PrivilegeFailure("\(option): cannot look up \"\(key)\": \(Sys.describe(rc))")
        }
    }
}

/// The C entries, made empty before a lookup fills them.
protocol ZeroInitializable { init() }
extension passwd: ZeroInitializable {}
extension group: ZeroInitializable {}

extension Credentials {
    /// This process's credentials now.
    public static func current() -> Credentials {
        var (u, eu, su): (uid_t, uid_t, uid_t) = (0, 0, 0)
        var (g, eg, sg): (gid_t, gid_t, gid_t) = (0, 0, 0)
        _ = apus_getresuid(&u, &eu, &su)  // fails only for a bad pointer
        _ = apus_getresgid(&g, &eg, &sg)
        return Credentials(uid: u, euid: eu, suid: su, gid: g, egid: eg, sgid: sg, groups: supplementaryGroups())
    }

    static func supplementaryGroups() -> [UInt32] {
        let count = getgroups(0, nil)
        guard count > 0 else { return [] }
        var groups = [gid_t](repeating: 0, count: Int(count))
        let n = getgroups(count, &groups)
        return n > 0 ? Array(groups.prefix(Int(n))) : []
    }
}

extension PrivilegeDrop {
    /// `--uid` and `--gid` of `uid`/`gid` resolved on this system and decided against this
    /// process's credentials: at start, and for the configuration a graceful reload read.
    public static func decide(uid: String?, gid: String?) throws(PrivilegeFailure) -> PrivilegeDrop {
        try decide(Identity.resolve(uid: uid, gid: gid, in: SystemUsers()), current: .current())
    }
}
