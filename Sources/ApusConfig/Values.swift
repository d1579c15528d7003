// Parsers and validators for option values. Each throws a ConfigError whose message starts
// with where the value came from (`--threads`, `APUS_THREADS`, `app.ini:3: threads`).

#if canImport(Glibc)
import Glibc
#endif
import ApusProtocols

/// Where a value is being applied from, and what the resolver knows at that point.
struct SetContext {
    /// How the user spelled the source: "--workers", "-w", "APUS_PROCESSES", "app.ini:3: processes".
    let origin: String
    let layer: Layer
    /// First value of this option within the current layer (lists reset lower layers' values).
    let firstInLayer: Bool
    /// The option was given by one of its negations (`--no-access-log`).
    let negated: Bool
    let fileSystem: any FileSystem

    func fail(_ text: String) -> ConfigError { ConfigError("\(origin): \(text)") }
}

/// Sources in increasing precedence.
enum Layer: Int, Comparable, Sendable {
    case iniFile, environment
    /// APUS_CMD_ARGS: command-line arguments held in the environment.
    case commandArguments
    case commandLine
    static func < (a: Layer, b: Layer) -> Bool { a.rawValue < b.rawValue }
}

/// A string in double quotes with escapes, for error messages.
func quoted(_ s: String) -> String { s.debugDescription }

func isASCIIDigits(_ s: Substring) -> Bool {
    !s.isEmpty && s.allSatisfy { $0.isASCII && $0.isNumber }
}

func trimmed(_ s: Substring) -> String {
    String(s.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
}

// MARK: Booleans and numbers

/// In ini files a flag is on unless its value is false, off, no or 0 (an empty value, or
/// any other, turns it on), as uWSGI reads them; elsewhere the value must be one of the spellings.
func parseBool(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> Bool {
    if ctx.layer == .iniFile { return !["false", "off", "no", "0"].contains(raw.lowercased()) }
    switch raw.lowercased() {
    case "true", "1", "yes", "on": return true
    case "false", "0", "no", "off": return false
    default: throw ctx.fail("expected true or false (or 1/0, yes/no, on/off), got \(quoted(raw))")
    }
}

func describeRange(_ range: ClosedRange<Int>, unit: String = "") -> String {
    if range.upperBound == Int.max { return "at least \(range.lowerBound)\(unit)" }
    return "between \(range.lowerBound) and \(range.upperBound)\(unit)"
}

func parseInt(_ raw: String, range: ClosedRange<Int>, _ ctx: SetContext) throws(ConfigError) -> Int {
    guard isASCIIDigits(raw[...]), let n = Int(raw) else {
        let noun = range.lowerBound == 1 ? "a positive integer"
            : range.lowerBound == 0 ? "a non-negative integer" : "an integer"
        throw ctx.fail("expected \(noun), got \(quoted(raw))")
    }
    guard range.contains(n) else { throw ctx.fail("must be \(describeRange(range)), got \(n)") }
    return n
}

private let sizeSuffixes: [Character: Int] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30]

/// Bytes: "65536", "64k", "1m", "2G" (powers of 1024).
func parseSize(_ raw: String, range: ClosedRange<Int>, _ ctx: SetContext) throws(ConfigError) -> Int {
    var digits = raw[...]
    var multiplier = 1
    if let last = digits.last, let m = sizeSuffixes[Character(last.lowercased())] {
        multiplier = m
        digits = digits.dropLast()
    }
    guard isASCIIDigits(digits) else {
        throw ctx.fail("expected a size in bytes such as 65536, 64k or 1m, got \(quoted(raw))")
    }
    guard let n = Int(digits) else { throw ctx.fail("too large: \(quoted(raw))") }
    let (bytes, overflow) = n.multipliedReportingOverflow(by: multiplier)
    guard !overflow else { throw ctx.fail("too large: \(quoted(raw))") }
    guard range.contains(bytes) else {
        throw ctx.fail("must be \(describeRange(range, unit: " bytes")), got \(bytes)")
    }
    return bytes
}

/// "64k" for 65536; plain bytes when no suffix divides evenly.
func formatSize(_ bytes: Int) -> String {
    for (suffix, unit) in [("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)] where bytes != 0 && bytes % unit == 0 {
        return "\(bytes / unit)\(suffix)"
    }
    return String(bytes)
}

/// Longest accepted duration: one day (catches milliseconds given as seconds).
let maxSeconds = 86400.0

/// Seconds as a decimal number: "30", "0.5".
func parseSeconds(_ raw: String, allowZero: Bool, _ ctx: SetContext) throws(ConfigError) -> Double {
    let pieces = raw.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    let wellFormed = !raw.isEmpty && raw != "." && pieces.allSatisfy { $0.isEmpty || isASCIIDigits($0) }
    guard wellFormed, let value = Double(raw) else {
        throw ctx.fail("expected a number of seconds such as 30 or 0.5, got \(quoted(raw))")
    }
    if !allowZero && value == 0 { throw ctx.fail("must be more than 0 seconds, got \(quoted(raw))") }
    if value > maxSeconds { throw ctx.fail("must be at most \(Int(maxSeconds)) seconds, got \(quoted(raw))") }
    return value
}

func formatSeconds(_ seconds: Double) -> String {
    seconds == seconds.rounded() && abs(seconds) < 1e15 ? String(Int(seconds)) : String(seconds)
}

// MARK: Binds

extension Bind.Address {
    /// The address as written on the command line: "127.0.0.1:8000", "[::1]:80", "unix:/run/app.sock".
    var text: String {
        switch self {
        case let .tcp(host, port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case let .unix(path): return "unix:\(path)"
        case let .fd(n): return "fd://\(n)"
        }
    }
}

/// Any IPv4 address: what ":8000" binds to.
let anyIPv4Host = "0.0.0.0"

func parsePort(_ text: Substring) -> Int? {
    guard isASCIIDigits(text), text.count <= 5, let port = Int(text), (1...65535).contains(port) else { return nil }
    return port
}

/// `:8000`, `HOST:PORT`, `[IPV6]:PORT`, `unix:PATH`, a socket path starting with `/`, `./` or
/// `../`, or `fd://N` (a listening socket inherited from the parent, as Gunicorn writes it).
/// `--stats` and `--metrics`: a TCP or unix address the master listens on itself (never an
/// inherited descriptor: those are the app's sockets). The protocol is the observer's own.
func parseObserverBind(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> Bind {
    guard !raw.hasPrefix("fd://") else { throw ctx.fail("expected HOST:PORT, :PORT or unix:PATH, got \(quoted(raw))") }
    return try parseBind(raw, proto: .http, ctx)
}

func parseBind(_ raw: String, proto: Bind.Kind, _ ctx: SetContext) throws(ConfigError) -> Bind {
    if raw.hasPrefix("fd://") {
        return Bind(address: .fd(try parseFD(String(raw.dropFirst(5)), ctx)), proto: proto)
    }
    if raw.hasPrefix("unix:") {
        let path = String(raw.dropFirst(5))
        guard !path.isEmpty else { throw ctx.fail("missing socket path after \"unix:\"") }
        return Bind(address: .unix(path: path), proto: proto)
    }
    if raw.hasPrefix("/") || raw.hasPrefix("./") || raw.hasPrefix("../") {
        return Bind(address: .unix(path: raw), proto: proto)
    }
    let host: String
    let portText: Substring
    if raw.hasPrefix("[") {
        guard let close = raw.firstIndex(of: "]") else {
            throw ctx.fail("missing \"]\" after the IPv6 address in \(quoted(raw))")
        }
        host = String(raw[raw.index(after: raw.startIndex)..<close])
        let rest = raw[raw.index(after: close)...]
        guard rest.hasPrefix(":") else { throw ctx.fail("missing \":PORT\" in \(quoted(raw))") }
        guard isIPv6Literal(host) else { throw ctx.fail("invalid IPv6 address \(quoted(host)) in \(quoted(raw))") }
        portText = rest.dropFirst()
    } else {
        guard let colon = raw.lastIndex(of: ":") else {
            let hint = isASCIIDigits(raw[...]) ? " (did you mean \":\(raw)\"?)" : ""
            throw ctx.fail("expected HOST:PORT, :PORT, [IPV6]:PORT or unix:PATH, got \(quoted(raw))\(hint)")
        }
        let hostText = String(raw[..<colon])
        if hostText.contains(":") {
            throw ctx.fail("IPv6 addresses need brackets, e.g. [::1]:8000, got \(quoted(raw))")
        }
        guard hostText.isEmpty || isHostName(hostText) else {
            throw ctx.fail("invalid host \(quoted(hostText)) in \(quoted(raw))")
        }
        host = hostText.isEmpty ? anyIPv4Host : hostText
        portText = raw[raw.index(after: colon)...]
    }
    guard let port = parsePort(portText) else {
        throw ctx.fail("port must be between 1 and 65535, got \(quoted(String(portText)))")
    }
    return Bind(address: .tcp(host: host, port: port), proto: proto)
}

/// Highest descriptor number accepted for an inherited socket (Linux's default hard limit
/// on open files is far below it).
let maxInheritedFD = 1 << 20

/// The number of an inherited listening socket: 0 and up (0 for inetd-style stdin).
func parseFD(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> Int32 {
    guard isASCIIDigits(raw[...]), raw.count <= 7, let n = Int(raw), n <= maxInheritedFD else {
        throw ctx.fail("expected a file descriptor number such as 3, got \(quoted(raw))")
    }
    return Int32(n)
}

func isIPv6Literal(_ s: String) -> Bool {
    let address = s.split(separator: "%", maxSplits: 1).first.map(String.init) ?? ""
    return address.contains(":") && address.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
}

/// A DNS name or an IPv4 literal (dotted quad with octets up to 255).
func isHostName(_ s: String) -> Bool {
    let labels = s.split(separator: ".", omittingEmptySubsequences: false)
    if labels.allSatisfy({ isASCIIDigits($0) }) {
        return labels.count == 4 && labels.allSatisfy { $0.count <= 3 && Int($0)! <= 255 }
    }
    return s.count <= 253 && labels.allSatisfy { label in
        !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
            && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }
}

// MARK: Application

func isIdentifier(_ s: Substring) -> Bool {
    guard let first = s.first, first.isLetter || first == "_" else { return false }
    return s.allSatisfy { $0.isLetter || $0 == "_" || ($0.isASCII && $0.isNumber) }
}

/// `a.b.c`: Python names joined by dots.
func isDottedIdentifier(_ s: Substring) -> Bool {
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    return !parts.isEmpty && parts.allSatisfy(isIdentifier)
}

/// `MODULE[:CALLABLE]` → (module, callable).
func parseAppSpec(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> (module: String, callable: String?) {
    let parts = raw.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
    guard isDottedIdentifier(parts[0]), parts.count == 1 || isDottedIdentifier(parts[1]) else {
        throw ctx.fail("expected MODULE[:CALLABLE] such as app.wsgi or hello:application, got \(quoted(raw))")
    }
    return (String(parts[0]), parts.count == 2 ? String(parts[1]) : nil)
}

/// `PREFIX` or uWSGI's `PREFIX=APP` → (SCRIPT_NAME, application). "/" becomes "".
func parseMount(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> (prefix: String, app: AppChoice?) {
    let parts = raw.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
    let prefix = String(parts[0])
    guard prefix.hasPrefix("/") else {
        throw ctx.fail("expected a URL prefix starting with \"/\", got \(quoted(prefix))")
    }
    guard prefix == "/" || !prefix.hasSuffix("/") else {
        throw ctx.fail("the prefix must not end with \"/\", got \(quoted(prefix))")
    }
    guard !prefix.contains(where: { $0.isWhitespace || $0 == "?" || $0 == "#" }) else {
        throw ctx.fail("the prefix must not contain spaces, \"?\" or \"#\", got \(quoted(prefix))")
    }
    let scriptName = prefix == "/" ? "" : prefix
    guard parts.count == 2 else { return (scriptName, nil) }
    let app = String(parts[1])
    guard !app.isEmpty else { throw ctx.fail("missing application after \"=\" in \(quoted(raw))") }
    if app.hasSuffix(".py") || app.contains("/") {
        return (scriptName, AppChoice(kind: .file, value: app, option: "mount", layer: ctx.layer, origin: ctx.origin))
    }
    _ = try parseAppSpec(app, ctx)
    return (scriptName, AppChoice(kind: .module, value: app, option: "mount", layer: ctx.layer, origin: ctx.origin))
}


/// uWSGI's `--logger`: `file:PATH`, `file:logfile=PATH[,maxsize=BYTES]` (a log file and its
/// rotation size) or `stdio` (stderr, nil); any other logger is refused.
func parseLogger(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> (file: String?, maxSize: Int?) {
    let value = trimmed(raw[...])
    if value == "stdio" || value == "stdio:" { return (nil, nil) }
    guard value.hasPrefix("file:") else {
        let kind = value.split(separator: ":", maxSplits: 1).first.map(String.init) ?? value
        throw ctx.fail("the \(quoted(kind)) logger is not supported in Apus (only file:PATH and stdio): let journald, Docker or syslog's own agent read stderr or a --log-file")
    }
    let rest = String(value.dropFirst("file:".count))
    guard rest.hasPrefix("logfile=") else {
        guard !rest.isEmpty, !rest.contains("\0") else { throw ctx.fail("expected file:PATH, got \(quoted(raw))") }
        return (rest, nil)
    }
    var file: String?
    var maxSize: Int?
    for item in rest.split(separator: ",") {
        let pair = item.split(separator: "=", maxSplits: 1)
        guard pair.count == 2 else { throw ctx.fail("expected KEY=VALUE in \(quoted(raw)), got \(quoted(String(item)))") }
        switch pair[0] {
        case "logfile": file = String(pair[1])
        case "maxsize": maxSize = try parseSize(String(pair[1]), range: 0...Int.max, ctx)
        default: throw ctx.fail("unknown key \(quoted(String(pair[0]))) in \(quoted(raw)) (file: takes logfile and maxsize)")
        }
    }
    guard let file, !file.contains("\0") else { throw ctx.fail("expected file:logfile=PATH, got \(quoted(raw))") }
    return (file, maxSize)
}

/// `--static-map MOUNT=DIR`: MOUNT a URL prefix (a trailing `/` dropped), DIR a directory
/// (made absolute from where apus starts: workers may run elsewhere after --chdir).
func parseStaticMap(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> StaticMap {
    guard let eq = raw.firstIndex(of: "=") else { throw ctx.fail("expected MOUNT=DIR, got \(quoted(raw))") }
    var mount = String(raw[..<eq])
    let dir = String(raw[raw.index(after: eq)...])
    guard mount.hasPrefix("/") else { throw ctx.fail("expected a URL prefix starting with \"/\", got \(quoted(mount))") }
    guard !mount.contains(where: { $0.isWhitespace || $0 == "?" || $0 == "#" || $0 == "%" }) else {
        throw ctx.fail("the prefix must not contain spaces, \"?\", \"#\" or \"%\", got \(quoted(mount))")
    }
    while mount.count > 1 && mount.hasSuffix("/") { mount.removeLast() }
    guard !dir.isEmpty else { throw ctx.fail("missing directory after \"=\" in \(quoted(raw))") }
    guard ctx.fileSystem.isDirectory(dir) else { throw ctx.fail("not a directory: \(quoted(dir))") }
    return StaticMap(mount: mount, directory: absolutePath(dir))
}

private func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    guard let cwd = workingDirectory() else { return path }
    return cwd.hasSuffix("/") ? cwd + path : cwd + "/" + path
}
