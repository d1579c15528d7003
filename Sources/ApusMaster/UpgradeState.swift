/// What a master hands to its own next image when it upgrades in place (SIGUSR2, FIFO `f`):
/// the descriptors it keeps open across `execve` and the table of its live workers, as a
/// pure value with a text form. The old image writes it to a memory file whose descriptor
/// it names in `environmentKey`; the new image reads it before it resolves its options.
///
/// The text is one record per line, fields separated by tabs, strings escaped (`\\`, `\t`,
/// `\n`), so a path with any byte but NUL survives. The first line names the format; a
/// binary that does not know it says so when the old master runs it with `--check`, before
/// anything is handed over.
public struct UpgradeState: Equatable, Sendable {
    /// The variable that names the descriptor of the state in the new image.
    public static let environmentKey = "_APUS_UPGRADE_STATE"
    /// The variable the old master sets for the `--check` run of the new binary.
    public static let formatKey = "_APUS_UPGRADE_FORMAT"
    public static let format = "apus-upgrade-1"

    public struct Socket: Equatable, Sendable {
        public var fd: Int32
        /// The bind as `Bind.description` writes it: how the new image finds it again.
        public var bind: String
        /// For a unix socket: its path (removed when the new configuration drops it).
        public var unixPath: String?

        public init(fd: Int32, bind: String, unixPath: String?) {
            self.fd = fd
            self.bind = bind
            self.unixPath = unixPath
        }
    }

    public struct Worker: Equatable, Sendable {
        public var slot: UInt32
        public var pid: Int32
        public var generation: UInt32
        public var ready: Bool
        public var retiring: Bool
        /// Monotonic clock seconds, the same in both images.
        public var startedAt: Double
        public var deadline: Double?
    }

    /// Where the old image was started: the new one resolves its options from there.
    public var startDirectory: String
    /// The generation that serves; the new image starts the next one.
    public var serving: UInt32
    public var statusRead: Int32
    public var statusWrite: Int32
    /// The master FIFO's descriptor and path (-1 and "" without one).
    public var fifoFD: Int32 = -1
    public var fifoPath = ""
    /// The connection tally's memory file.
    public var tallyFD: Int32
    public var sockets: [Socket] = []
    public var workers: [Worker] = []

    public struct Malformed: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Every descriptor the new image takes over.
    public var descriptors: [Int32] {
        [statusRead, statusWrite, tallyFD] + (fifoFD >= 0 ? [fifoFD] : []) + sockets.map(\.fd)
    }

    public func encoded() -> String {
        var lines = [Self.format,
                     record("start", startDirectory),
                     record("serving", String(serving)),
                     record("status", String(statusRead), String(statusWrite)),
                     record("tally", String(tallyFD))]
        if fifoFD >= 0 { lines.append(record("fifo", String(fifoFD), fifoPath)) }
        for s in sockets { lines.append(record("socket", String(s.fd), s.bind, s.unixPath ?? "")) }
        for w in workers {
            lines.append(record("worker", String(w.slot), String(w.pid), String(w.generation),
                                w.ready ? "ready" : "starting", w.retiring ? "retiring" : "serving",
                                String(w.startedAt), w.deadline.map { String($0) } ?? "-"))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public init(startDirectory: String, serving: UInt32, statusRead: Int32, statusWrite: Int32, tallyFD: Int32) {
        self.startDirectory = startDirectory
        self.serving = serving
        self.statusRead = statusRead
        self.statusWrite = statusWrite
        self.tallyFD = tallyFD
    }

    public init(decoding text: String) throws(Malformed) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard lines.first == Self.format else {
            throw Malformed(description: "the upgrade state is not in format \(Self.format)")
        }
        lines.removeFirst()
        var start: String?, serving: UInt32?, status: (Int32, Int32)?, tally: Int32?
        var fifo: (Int32, String)?
        var sockets: [Socket] = []
        var workers: [Worker] = []
        for line in lines {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map { Self.unescape(String($0)) }
            func int<T: FixedWidthInteger>(_ i: Int) throws(Malformed) -> T {
                guard i < f.count, let v = T(f[i]) else { throw Malformed(description: "bad number in upgrade state line: \(line)") }
                return v
            }
            func double(_ i: Int) throws(Malformed) -> Double {
                guard i < f.count, let v = Double(f[i]) else { throw Malformed(description: "bad number in upgrade state line: \(line)") }
                return v
            }
            func text(_ i: Int) throws(Malformed) -> String {
                guard i < f.count else { throw Malformed(description: "short upgrade state line: \(line)") }
                return f[i]
            }
            switch f[0] {
            case "start": start = try text(1)
            case "serving": serving = try int(1)
            case "status": status = (try int(1), try int(2))
            case "tally": tally = try int(1)
            case "fifo": fifo = (try int(1), try text(2))
            case "socket":
                let path = try text(3)
                sockets.append(Socket(fd: try int(1), bind: try text(2), unixPath: path.isEmpty ? nil : path))
            case "worker":
                let deadline = try text(7)
                workers.append(Worker(slot: try int(1), pid: try int(2), generation: try int(3),
                                      ready: try text(4) == "ready", retiring: try text(5) == "retiring",
                                      startedAt: try double(6), deadline: deadline == "-" ? nil : try double(7)))
            default:
                throw Malformed(description: "unknown upgrade state line: \(line)")
            }
        }
        guard let start, let serving, let status, let tally else {
            throw Malformed(description: "the upgrade state lacks the start directory, generation, status pipe or tally")
        }
        self.init(startDirectory: start, serving: serving, statusRead: status.0, statusWrite: status.1, tallyFD: tally)
        if let fifo { (fifoFD, fifoPath) = fifo }
        self.sockets = sockets
        self.workers = workers
    }

    private func record(_ fields: String...) -> String {
        fields.map(Self.escape).joined(separator: "\t")
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func unescape(_ s: String) -> String {
        var out = ""
        var escaped = false
        for c in s.unicodeScalars {
            if escaped {
                switch c {
                case "t": out += "\t"
                case "n": out += "\n"
                default: out.unicodeScalars.append(c)
                }
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
