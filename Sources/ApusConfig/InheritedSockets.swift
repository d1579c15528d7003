// Listening sockets handed over by the process that started Apus: systemd's socket activation
// (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), read once at start and kept for every resolution.

/// One socket systemd passed: its descriptor, its name (`FileDescriptorName=` in the socket
/// unit, `--fdname=` of systemd-socket-activate) and, when the master could read it, its
/// local address, so that a `--http`/`--socket` at the same address adopts it (as uWSGI does).
public struct InheritedSocket: Equatable, Hashable, Sendable {
    public let fd: Int32
    public let name: String?
    public var address: Bind.Address?

    public init(fd: Int32, name: String? = nil, address: Bind.Address? = nil) {
        self.fd = fd
        self.name = name
        self.address = address
    }

    /// The name that makes an activated socket speak the uwsgi protocol.
    public static let uwsgiName = "uwsgi"
}

/// systemd's socket-activation protocol (sd_listen_fds(3)).
public enum SocketActivation {
    /// The first descriptor passed (SD_LISTEN_FDS_START).
    public static let firstFD: Int32 = 3
    /// The variables read, and removed from the environment afterwards so that workers and
    /// anything the app starts do not take the sockets for theirs. (LISTEN_PIDFDID is set by
    /// newer systemd next to LISTEN_PID.)
    public static let variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"]

    /// The sockets passed to the process `pid`: none when LISTEN_PID is unset or names another
    /// process (the variables were meant for a parent), else LISTEN_FDS of them from fd 3,
    /// named by LISTEN_FDNAMES (colon-separated) when it is set.
    public static func parse(environment: [String: String], pid: Int32) throws(ConfigError) -> [InheritedSocket] {
        guard let pidText = environment["LISTEN_PID"], !pidText.isEmpty else { return [] }
        guard isASCIIDigits(pidText[...]), let listenPID = Int32(pidText) else {
            throw ConfigError("LISTEN_PID: expected a process id, got \(quoted(pidText))")
        }
        guard listenPID == pid else { return [] }
        let countText = environment["LISTEN_FDS"] ?? ""
        guard isASCIIDigits(countText[...]), countText.count <= 6, let count = Int(countText),
              count <= maxInheritedFD - Int(firstFD) else {
            throw ConfigError("LISTEN_FDS: expected a number of descriptors, got \(quoted(countText))")
        }
        var names: [String?] = Array(repeating: nil, count: count)
        if let namesText = environment["LISTEN_FDNAMES"] {
            let given = namesText.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard given.count == count else {
                throw ConfigError("LISTEN_FDNAMES: \(given.count) names for LISTEN_FDS=\(count) descriptors (\(quoted(namesText)))")
            }
            names = given.map { $0.isEmpty ? nil : $0 }
        }
        return (0..<count).map { InheritedSocket(fd: firstFD + Int32($0), name: names[$0]) }
    }

    /// The variables that pass `sockets` (as `parse` returned them, from fd 3 on) to the
    /// process `pid`: what an upgrade in place gives the master's next image, which keeps
    /// the pid and the descriptors. Empty when there are none.
    public static func environment(for sockets: [InheritedSocket], pid: Int32) -> [String] {
        guard !sockets.isEmpty else { return [] }
        return ["LISTEN_PID=\(pid)", "LISTEN_FDS=\(sockets.count)",
                "LISTEN_FDNAMES=" + sockets.map { $0.name ?? "" }.joined(separator: ":")]
    }
}

/// The binds once inherited sockets are taken into account, in order:
/// - a bind given as `fd://N` (or `--fd N`) for an inherited socket keeps its protocol;
/// - an inherited socket whose address is that of a configured `--http`/`--socket` bind
///   replaces that bind (adopted, not opened again) and speaks its protocol;
/// - any other inherited socket is added: uwsgi when it is named `uwsgi`, HTTP otherwise.
func adopt(_ inherited: [InheritedSocket], into binds: [Bind]) -> [Bind] {
    var result = binds
    for socket in inherited {
        if result.contains(where: { $0.address == .fd(socket.fd) }) { continue }
        if let address = socket.address, let i = result.firstIndex(where: { $0.address == address }) {
            result[i].address = .fd(socket.fd)
            continue
        }
        let proto: Bind.Kind = socket.name == InheritedSocket.uwsgiName ? .uwsgi : .http
        result.append(Bind(address: .fd(socket.fd), proto: proto))
    }
    var unique: [Bind] = []
    for bind in result where !unique.contains(bind) { unique.append(bind) }
    return unique
}
