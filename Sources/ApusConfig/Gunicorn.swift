// What Gunicorn users bring along: its worker classes and log levels as values, the
// GUNICORN_CMD_ARGS equivalent (APUS_CMD_ARGS, split as Python's shlex.split does), and the
// translation of a gunicorn.conf.py's settings into Apus options (--from-gunicorn).

/// `-k`/`--worker-class`: Gunicorn's spellings of its sync and gthread workers are taken;
/// every other class is refused with what to use instead.
func parseWorkerClass(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> WorkerClass {
    if let refusal = workerClassRefusal(raw) { throw ctx.fail(refusal) }
    return workerClass(raw)!
}

private func workerClass(_ raw: String) -> WorkerClass? {
    switch raw {
    case "sync", "egg:gunicorn#sync", "gunicorn.workers.sync.SyncWorker": .sync
    case "gthread", "egg:gunicorn#gthread", "gunicorn.workers.gthread.ThreadWorker": .gthread
    default: nil
    }
}

/// Why a worker class is not taken (nil when it is).
func workerClassRefusal(_ raw: String) -> String? {
    if workerClass(raw) != nil { return nil }
    let lower = raw.lowercased()
    if lower.contains("uvicorn") || lower.contains("asgi") {
        return "\(quoted(raw)) runs ASGI apps; Apus serves WSGI apps only: run an ASGI app under an ASGI server such as uvicorn"
    }
    if lower.contains("gevent") || lower.contains("eventlet") {
        return "\(quoted(raw)) needs greenlets and a monkey-patched app, which Apus does not do: use gthread with --threads N for N requests in the app at once in each worker"
    }
    if lower.contains("tornado") {
        return "\(quoted(raw)) runs Tornado applications; Apus serves WSGI apps only: for a WSGI app use gthread (or sync)"
    }
    return "unknown worker class \(quoted(raw)): Apus takes sync or gthread (its threaded worker; --threads sets the threads)"
}

/// `--log-level`: Gunicorn's names, in any case.
func parseLogLevel(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> LogLevel {
    guard let level = LogLevel.allCases.first(where: { $0.name == raw.lowercased() }) else {
        throw ctx.fail("expected debug, info, warning, error or critical, got \(quoted(raw))")
    }
    return level
}

/// Gunicorn's `-p FILE` is its pidfile; here `-p` is uWSGI's `--processes`: a value that is
/// not a number gets a pointer to `--pid`.
func withGunicornHint(_ error: ConfigError, _ entry: Entry) -> ConfigError {
    guard entry.spec.name == "processes", entry.origin.hasSuffix("-p"), Int(entry.raw) == nil else { return error }
    return ConfigError(error.message + " (Gunicorn's -p FILE is --pid FILE here; -p is uWSGI's --processes)")
}

// MARK: - APUS_CMD_ARGS

/// The variable that holds extra command-line arguments, as GUNICORN_CMD_ARGS does for
/// Gunicorn: above ini files and APUS_* variables, below the real command line.
public let commandArgumentsVariable = "APUS_CMD_ARGS"

/// Splits a string into words as Python's `shlex.split` does (POSIX mode, no comments):
/// blanks separate words, single quotes keep everything, double quotes keep everything but
/// `\"` and `\\`, and a backslash outside quotes keeps the next character.
/// - Throws: a one-line reason on an unclosed quote or a trailing backslash.
func shellWords(_ text: String) throws(ConfigError) -> [String] {
    var words: [String] = []
    var word = ""
    var inWord = false
    var iterator = Array(text).makeIterator()
    while let c = iterator.next() {
        switch c {
        case " ", "\t", "\n", "\r":
            if inWord { words.append(word); word = ""; inWord = false }
        case "'":
            inWord = true
            while true {
                guard let q = iterator.next() else { throw ConfigError("no closing quotation (')") }
                if q == "'" { break }
                word.append(q)
            }
        case "\"":
            inWord = true
            while true {
                guard let q = iterator.next() else { throw ConfigError("no closing quotation (\")") }
                if q == "\"" { break }
                if q == "\\" {
                    guard let next = iterator.next() else { throw ConfigError("no closing quotation (\")") }
                    if next != "\"" && next != "\\" { word.append("\\") }
                    word.append(next)
                } else {
                    word.append(q)
                }
            }
        case "\\":
            guard let next = iterator.next() else { throw ConfigError("no character after the last backslash") }
            inWord = true
            word.append(next)
        default:
            inWord = true
            word.append(c)
        }
    }
    if inWord { words.append(word) }
    return words
}

// MARK: - gunicorn.conf.py

/// One top-level statement of a gunicorn.conf.py as python3's `ast` module saw it (the file
/// is parsed, never run).
public struct GunicornSetting: Equatable, Sendable {
    public indirect enum Value: Equatable, Sendable {
        case string(String), int(Int), float(Double), bool(Bool), none
        case list([Value])
        /// Not a literal: the expression's source text.
        case computed(String)
        /// A literal of a shape no setting takes (a dict, a set): its source text.
        case other(String)
        /// `def NAME(...)`: a server hook.
        case function
    }
    public let name: String
    public let line: Int
    public let value: Value

    public init(name: String, line: Int, value: Value) {
        self.name = name
        self.line = line
        self.value = value
    }
}

/// The Apus options equivalent to a gunicorn.conf.py, and why anything was left out.
public struct GunicornTranslation: Equatable, Sendable {
    /// `(option, value)` in file order; a nil value is a flag.
    public var options: [(name: String, value: String?)] = []
    /// The application (`wsgi_app`), given as the positional argument.
    public var app: String?
    /// One line per setting not translated, or translated with a difference worth knowing.
    public var notes: [String] = []

    public static func == (a: Self, b: Self) -> Bool {
        a.app == b.app && a.notes == b.notes
            && a.options.map { "\($0.name)=\($0.value ?? "")" } == b.options.map { "\($0.name)=\($0.value ?? "")" }
    }

    /// `apus --opt value ... APP`, each word quoted for a POSIX shell where it needs it.
    public var commandLine: String {
        var words = ["apus"]
        for (name, value) in options {
            words.append("--" + name)
            if let value { words.append(shellQuoted(value)) }
        }
        if let app { words.append(shellQuoted(app)) }
        return words.joined(separator: " ")
    }

    /// The same as an `[apus]` ini section.
    public var iniSection: String {
        var lines = ["[apus]"]
        for (name, value) in options { lines.append("\(name) = \(value ?? "true")") }
        if let app { lines.append("module = \(app)") }
        return lines.joined(separator: "\n")
    }
}

/// Quotes a word for a POSIX shell when it holds anything but plain characters.
func shellQuoted(_ word: String) -> String {
    let plain = !word.isEmpty && word.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "@%+=:,./_-".contains($0)) }
    return plain ? word : "'" + word.replacing("'", with: "'\\''") + "'"
}

/// Gunicorn settings with no Apus counterpart that people do set, and what to do instead.
private let gunicornWithoutCounterpart: [String: String] = [
    "reload": "Apus has no code reloader: use --touch-reload FILE, or a chain reload (echo c > --master-fifo) after a deploy; see docs/reloading.md",
    "reload_extra_files": "Apus has no code reloader: --touch-reload FILE watches one file",
    "daemon": "Gunicorn's daemon takes no log file; Apus's --daemonize LOGFILE (uWSGI's) does: add it by hand, or run Apus in the foreground under systemd or Docker",
    "certfile": "Apus does not terminate TLS: put nginx or a load balancer in front",
    "keyfile": "Apus does not terminate TLS: put nginx or a load balancer in front",
    "worker_tmp_dir": "Apus's master watches its workers without a heartbeat file",
    "capture_output": "the app's stdout and stderr already go where the log goes",
]

/// Translates the settings of a gunicorn.conf.py. `cores`: this machine's processors, for the
/// suggestion when `workers` is computed.
public func translateGunicornConfig(_ settings: [GunicornSetting], file: String, cores: Int) -> GunicornTranslation {
    var out = GunicornTranslation()
    var sawAccessLog = false
    func note(_ s: GunicornSetting, _ text: String) { out.notes.append("\(file):\(s.line): \(s.name): \(text)") }
    func flag(_ option: String, _ value: GunicornSetting.Value) {
        if case .bool(true) = value { out.options.append((option, nil)) }
    }
    for s in settings {
        if s.name == "accesslog" { sawAccessLog = true }
        if case .function = s.value {
            note(s, "a server hook (Python run by Gunicorn's master or workers); Apus runs no hooks: move start-up work into the app's module (run in each worker, or once with --preload)")
            continue
        }
        if let why = gunicornWithoutCounterpart[s.name] {
            if case .bool(false) = s.value { continue }
            note(s, why)
            continue
        }
        if case let .computed(source) = s.value {
            if s.name == "workers" {
                note(s, "computed (\(source)); Apus takes a number: Gunicorn's usual 2 x cores + 1 is --processes \(2 * cores + 1) on this machine (\(cores) cores)")
            } else {
                note(s, "computed (\(source)), not translated: Apus reads literal values only; give the option its value")
            }
            continue
        }
        if case let .other(source) = s.value {
            note(s, "\(source) is not a value Apus can translate")
            continue
        }
        let texts = scalarTexts(s.value)
        func one(_ option: String) {
            guard let text = texts.first, texts.count == 1 else { note(s, "expected one value, got \(texts.count)"); return }
            out.options.append((option, text))
        }
        func each(_ option: String) { for t in texts { out.options.append((option, t)) } }
        switch s.name {
        case "bind": for t in texts { out.options.append(("http", gunicornBind(t))) }
        case "workers": one("processes")
        case "proc_name": one("proc-name")
        case "worker_class":
            if let t = texts.first, let refusal = workerClassRefusal(t) { note(s, refusal) } else { one("worker-class") }
        case "threads": one("threads")
        case "timeout":
            one("harakiri")
            note(s, "Gunicorn kills a worker silent for this long; Apus's --harakiri (--timeout) cuts a request in the app for this long, with a 504 and its stack in the log")
        case "graceful_timeout": one("shutdown-timeout")
        case "keepalive": one("keep-alive")
        case "max_requests": one("max-requests")
        case "max_requests_jitter": one("max-requests-jitter")
        case "worker_connections": one("max-connections")
        case "backlog": one("backlog")
        case "preload_app": flag("preload", s.value)
        case "accesslog": if s.value != .none { one("access-logfile") }
        case "errorlog": if texts != ["-"] { one("log-file") }
        case "loglevel": one("log-level")
        case "chdir": one("chdir")
        case "pythonpath": one("pythonpath")
        case "raw_env": each("env")
        case "pidfile": one("pidfile")
        case "user": one("uid")
        case "group": one("gid")
        case "umask":
            if case let .int(mask) = s.value { out.options.append(("umask", "0" + String(mask, radix: 8))) } else { one("umask") }
        case "forwarded_allow_ips": out.options.append(("forwarded-allow-ips", texts.joined(separator: ",")))
        case "proxy_protocol":
            // Gunicorn 27 takes off, v1, v2 or auto (older ones a bool); Apus takes v1 and v2 alike.
            switch s.value {
            case .bool(true), .string("auto"), .string("v1"), .string("v2"): out.options.append(("proxy-protocol", nil))
            case .bool(false), .string("off"), .none: break
            default: note(s, "expected off, v1, v2 or auto; left out")
            }
        case "proxy_allow_ips": out.options.append(("proxy-allow-ips", texts.joined(separator: ",")))
        case "limit_request_line":
            if texts == ["0"] { note(s, "0 (no limit) has no equivalent: Apus's --limit-request-line goes up to 1m") } else { one("limit-request-line") }
        case "limit_request_fields": one("limit-request-fields")
        case "limit_request_field_size": one("limit-request-field-size")
        case "wsgi_app": out.app = texts.first
        default:
            note(s, "not a Gunicorn setting Apus has an equivalent for; left out")
        }
    }
    if !sawAccessLog {
        out.options.append(("no-access-log", nil))
        out.notes.append("\(file): accesslog is not set, so Gunicorn writes no access log: --no-access-log does the same (Apus's default logs each request)")
    }
    return out
}

/// Gunicorn's bind forms that Apus spells otherwise: `tcp://` and `unix://` prefixes, and a
/// host without a port (Gunicorn's default port, 8000).
func gunicornBind(_ raw: String) -> String {
    var bind = raw
    if bind.hasPrefix("tcp://") { bind.removeFirst(6) }
    if bind.hasPrefix("unix://") { return "unix:" + bind.dropFirst(7) }
    if bind.hasPrefix("unix:") || bind.hasPrefix("fd://") || bind.hasPrefix("/") { return bind }
    let hasPort = bind.hasPrefix("[") ? bind.contains("]:") : bind.contains(":")
    return hasPort ? bind : bind + ":8000"
}

/// A literal as the words of option values: a list gives one word per item.
private func scalarTexts(_ value: GunicornSetting.Value) -> [String] {
    switch value {
    case let .string(s): return [s]
    case let .int(n): return [String(n)]
    case let .float(x): return [x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x)]
    case let .bool(b): return [b ? "true" : "false"]
    case .none: return []
    case let .list(items): return items.flatMap(scalarTexts)
    case .computed, .other, .function: return []
    }
}

/// Reads the records the Python side prints (see `GunicornConfigReader`): one statement a
/// line, fields separated by tabs, `\t`, `\n` and `\\` escaped. Unknown lines are skipped.
public func parseGunicornRecords(_ text: String) -> [GunicornSetting] {
    var settings: [GunicornSetting] = []
    for line in text.split(separator: "\n") {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map { unescapeField($0) }
        guard fields.count >= 3, let number = Int(fields[1]) else { continue }
        let name = fields[2]
        switch fields[0] {
        case "value":
            guard let value = decodeLiteral(Array(fields.dropFirst(3))) else { continue }
            settings.append(GunicornSetting(name: name, line: number, value: value))
        case "computed" where fields.count == 4:
            settings.append(GunicornSetting(name: name, line: number, value: .computed(fields[3])))
        case "other" where fields.count == 4:
            settings.append(GunicornSetting(name: name, line: number, value: .other(fields[3])))
        case "function":
            settings.append(GunicornSetting(name: name, line: number, value: .function))
        default:
            continue
        }
    }
    return settings
}

/// `s TEXT`, `i N`, `f X`, `b 1`, `n`, or `l` followed by those for a list.
private func decodeLiteral(_ fields: [String]) -> GunicornSetting.Value? {
    func scalar(_ tag: String, _ text: String?) -> GunicornSetting.Value? {
        switch (tag, text) {
        case let ("s", t?): return .string(t)
        case let ("i", t?): return Int(t).map { .int($0) }
        case let ("f", t?): return Double(t).map { .float($0) }
        case let ("b", t?): return .bool(t == "1")
        case ("n", _): return GunicornSetting.Value.none
        default: return nil
        }
    }
    guard let tag = fields.first else { return nil }
    if tag == "l" {
        var items: [GunicornSetting.Value] = []
        var i = 1
        while i < fields.count {
            if fields[i] == "n" { items.append(.none); i += 1; continue }
            guard i + 1 < fields.count, let item = scalar(fields[i], fields[i + 1]) else { return nil }
            items.append(item)
            i += 2
        }
        return .list(items)
    }
    return scalar(tag, fields.count > 1 ? fields[1] : nil)
}

private func unescapeField(_ field: Substring) -> String {
    guard field.contains("\\") else { return String(field) }
    var out = ""
    var escaped = false
    for c in field {
        if escaped {
            switch c {
            case "t": out.append("\t")
            case "n": out.append("\n")
            case "r": out.append("\r")
            default: out.append(c)
            }
            escaped = false
        } else if c == "\\" {
            escaped = true
        } else {
            out.append(c)
        }
    }
    return out
}
