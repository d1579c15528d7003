// uWSGI-style ini files, read the way uWSGI reads them (core/ini.c, core/config.c):
//
// - Sections: `[uwsgi]` and `[apus]` by default; `FILE:SECTION` reads only SECTION.
// - `key = value`; a line without `=` is a key with an empty value; `#` and `;` start
//   comment lines.
// - Magic variables of the file, expanded when it is read: `%d` (its directory, with a
//   trailing slash), `%p` (its absolute path), `%s` (its name), `%n` (its name without the
//   extension), `%e` (the extension), `%c` (the name of its directory), `%x` (the section
//   asked for), `%o` (the path as given), `%0`..`%9` (the directory's components), `%k` (CPU
//   cores), `%h` (host name), `%v` (working directory), `%%`. Upper case (`%D`, `%P`, ...):
//   the same for the first ini file read.
// - `ini = FILE[:SECTION]` and `ini = :SECTION` include another file or section where they
//   stand; `set = KEY=VALUE`, `set-placeholder`/`set-ph = KEY=VALUE` define a value.
// - `if-env`/`if-not-env`/`if-exists`/`if-not-exists`/`if-file`/`if-not-file`/`if-dir`/
//   `if-not-dir`/`if-opt`/`if-not-opt` ... `else` ... `endif` blocks (they do not nest, as in
//   uWSGI); `%(_)` in the block is the variable's value or the path.
// - Once every file is read: `$(VAR)` (also `$(VAR:-DEFAULT)`, `$(VAR-DEFAULT)`) from the
//   environment, then `%(KEY)`: the first value given to KEY in the ini files, option or not.
//   A key that is no option is a placeholder when some `%(KEY)` refers to it; else it is an
//   unknown key (an error with a did-you-mean).
//
// Where Apus is stricter than uWSGI, so that a mistake is one line at start instead of a
// literal `$(VAR)` or `%(key)` in a path: an unset variable, a reference to no key, an
// unknown magic letter (`%z`), an include cycle, a section asked for that is not there and
// an if block inside another are errors naming file:line.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Facts about the machine that ini magic variables show (`%k`, `%h`, `%v`); tests pass values.
public struct IniHost: Sendable, Equatable {
    public var cpus: Int
    public var hostname: String
    /// The working directory, against which relative ini paths are made absolute (`%p`, `%d`).
    public var workingDirectory: String

    public init(cpus: Int, hostname: String, workingDirectory: String) {
        self.cpus = cpus
        self.hostname = hostname
        self.workingDirectory = workingDirectory
    }

    public static func current() -> IniHost {
        var name = [CChar](repeating: 0, count: 256)
        let hostname = gethostname(&name, name.count - 1) == 0
            ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        let dir = ApusConfig.workingDirectory() ?? "/"
        return IniHost(cpus: max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))), hostname: hostname,
                       workingDirectory: dir)
    }
}

/// `FILE`, `FILE:SECTION` or `:SECTION` (the last colon splits, as in uWSGI).
func splitIniSpec(_ spec: String) -> (file: String, section: String?) {
    guard let colon = spec.lastIndex(of: ":") else { return (spec, nil) }
    let section = String(spec[spec.index(after: colon)...])
    return (String(spec[..<colon]), section.isEmpty ? nil : section)
}

/// A positional argument that names an ini file: `FILE.ini` or `FILE.ini:SECTION`, existing.
func isIniArgument(_ argument: String, _ fileSystem: any FileSystem) -> Bool {
    let file = splitIniSpec(argument).file
    return file.hasSuffix(".ini") && fileSystem.isFile(file)
}

/// One `key = value` line that was taken (its section asked for, its if block true).
struct IniLine {
    /// As written (after the magic variables).
    let key: String
    var value: String
    /// "file:line".
    let place: String
    /// Given by `set-placeholder`/`set-ph`: never an option.
    var placeholderOnly = false
}

/// Reads ini files into lines, then expands `$(...)` and `%(...)` and maps the keys to options.
struct IniReader {
    let fileSystem: any FileSystem
    let environment: [String: String]
    let host: IniHost
    let index: OptionIndex

    private(set) var lines: [IniLine] = []
    /// The magic variables of the first file read (`%D`, `%P`, ...).
    private var firstMagic: [Character: String]?
    /// The files and sections being read, for include cycles.
    private var stack: [String] = []

    /// How deep includes and references may nest, and how long an expanded value may grow:
    /// a file that goes beyond is a mistake, and must not exhaust the stack or the memory.
    static let maxDepth = 64
    static let maxValueLength = 1 << 20

    init(fileSystem: any FileSystem, environment: [String: String], host: IniHost, index: OptionIndex) {
        self.fileSystem = fileSystem
        self.environment = environment
        self.host = host
        self.index = index
    }

    /// Reads `spec` (`FILE[:SECTION]`); `origin` names where it was asked for in errors.
    mutating func read(_ spec: String, origin: String, currentFile: String? = nil) throws(ConfigError) {
        let (given, section) = splitIniSpec(spec)
        let file = given.isEmpty ? (currentFile ?? "") : given
        guard !file.isEmpty, let text = fileSystem.read(file) else {
            throw ConfigError("\(origin): cannot read ini file \(quoted(file))")
        }
        let absolute = absolutePath(file)
        let frame = "\(absolute):\(section ?? "")"
        if stack.contains(frame) {
            let chain = (stack + [frame]).map { $0.hasSuffix(":") ? String($0.dropLast()) : $0 }
            throw ConfigError("\(origin): ini file \(quoted(spec)) includes itself: \(chain.joined(separator: " -> "))")
        }
        guard stack.count < IniReader.maxDepth else {
            throw ConfigError("\(origin): ini files include each other more than \(IniReader.maxDepth) deep")
        }
        stack.append(frame)
        defer { stack.removeLast() }
        let magic = magicVariables(given: spec, absolute: absolute, section: section)
        if firstMagic == nil { firstMagic = magic }
        try readLines(text, file: file, section: section, magic: magic, origin: origin)
    }

    private mutating func readLines(_ text: String, file: String, section asked: String?,
                                    magic: [Character: String], origin: String) throws(ConfigError) {
        var section: String?
        var found = false
        var block: IfBlock?
        var lineNumber = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            lineNumber += 1
            let line = trimmed(rawLine)
            let place = "\(file):\(lineNumber)"
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), line.count > 2 else {
                    throw ConfigError("\(place): malformed section header \(quoted(line))")
                }
                section = trimmed(line.dropFirst().dropLast()).lowercased()
                continue
            }
            guard let section else {
                throw ConfigError("\(place): \(quoted(line)) is outside any section (start the file with [apus] or [uwsgi])")
            }
            let wanted = asked.map { section == $0.lowercased() } ?? (section == "uwsgi" || section == "apus")
            guard wanted else { continue }
            found = true
            let eq = line.firstIndex(of: "=")
            let key = try expandMagic(eq.map { trimmed(line[..<$0]) } ?? line, magic, place)
            var value = try expandMagic(eq.map { trimmed(line[line.index(after: $0)...]) } ?? "", magic, place)
            let name = normalizedKey(key)

            // if ... else ... endif
            if let test = IfBlock.Test(rawValue: name) ?? IfBlock.aliases[name] {
                if let open = block {
                    throw ConfigError("\(place): \(key) inside the \(open.key) block opened at \(open.place): if blocks do not nest (close it with endif first)")
                }
                block = try IfBlock(test: test, key: key, argument: value, place: place, reader: self)
                continue
            }
            if name == "endif" || name == "end-if" {
                block = nil
                continue
            }
            if name == "else" {
                guard block != nil else { throw ConfigError("\(place): else without an if block") }
                block!.taken.toggle()
                continue
            }
            if let open = block {
                guard open.taken else { continue }
                if let underscore = open.underscore { value = value.replacing("%(_)", with: underscore) }
            }

            switch name {
            case "ini":
                try read(try expandEnvironment(value, place), origin: "\(place): \(key)", currentFile: file)
            case "set", "set-placeholder", "set-ph":
                guard let split = value.firstIndex(of: "="), split != value.startIndex else {
                    throw ConfigError("\(place): \(key): expected NAME=VALUE, got \(quoted(value))")
                }
                let setKey = String(value[..<split])
                // set: an option, or else a placeholder; set-placeholder/set-ph: a placeholder.
                let isOption = index.long[normalizedKey(setKey)] != nil
                let onlyPlaceholder = name != "set" || !isOption
                if name != "set", isOption {
                    throw ConfigError("\(place): \(key): \(quoted(setKey)) is an option, not a placeholder (use set or a plain \(setKey) = ...)")
                }
                lines.append(IniLine(key: setKey, value: String(value[value.index(after: split)...]), place: place,
                                     placeholderOnly: onlyPlaceholder))
            default:
                lines.append(IniLine(key: key, value: value, place: place))
            }
        }
        if let asked, !found {
            throw ConfigError("\(origin): \(file) has no section [\(asked)]")
        }
    }

    /// The first value given to `key` so far (uWSGI looks references up this way).
    func firstValue(of key: String) -> String? {
        lines.first { $0.key == key }?.value
    }

    // MARK: Magic variables

    private func absolutePath(_ path: String) -> String {
        let joined = path.hasPrefix("/") ? path : host.workingDirectory + "/" + path
        var parts: [Substring] = []
        for part in joined.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    private func magicVariables(given: String, absolute: String, section: String?) -> [Character: String] {
        let slash = absolute.lastIndex(of: "/")!
        let name = String(absolute[absolute.index(after: slash)...])
        let directory = String(absolute[...slash])
        let dot = name.lastIndex(of: ".")
        var table: [Character: String] = [
            "o": given, "p": absolute, "s": name, "d": directory,
            "n": dot.map { String(name[..<$0]) } ?? name,
            "e": dot.map { String(name[name.index(after: $0)...]) } ?? "",
            "c": directory.split(separator: "/").last.map(String.init) ?? "",
            "x": section ?? "",
        ]
        let components = directory.split(separator: "/")
        for digit in 0..<10 {
            table[Character(String(digit))] = digit < components.count ? String(components[digit]) : ""
        }
        return table
    }

    /// `%X` → the magic variable; `%%` → `%`; `%(` is left for references; `%` before anything
    /// else than a letter or digit is kept as it is.
    private func expandMagic(_ text: String, _ magic: [Character: String], _ place: String) throws(ConfigError) -> String {
        guard text.contains("%") else { return text }
        var out = ""
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            let next = text.index(after: i)
            guard c == "%", next < text.endIndex else { out.append(c); i = next; continue }
            let letter = text[next]
            if letter == "%" {
                out.append("%")
            } else if letter == "(" {
                out += "%("
            } else if let value = magic[letter] ?? magicOfHost(letter) {
                out += value
            } else if letter.isUppercase, let first = firstMagic?[Character(letter.lowercased())] {
                out += first
            } else if letter.isLetter || letter.isNumber {
                throw ConfigError("\(place): unknown magic variable %\(letter) (Apus knows %d %p %s %n %e %c %x %o %0-%9 %k %h %v %%, and %D %P ... for the first ini file)")
            } else {
                out += "%\(letter)"
            }
            i = text.index(after: next)
        }
        return out
    }

    private func magicOfHost(_ letter: Character) -> String? {
        switch letter {
        case "k": String(host.cpus)
        case "h": host.hostname
        case "v": host.workingDirectory
        default: nil
        }
    }

    // MARK: Expansion once everything is read

    /// `$(VAR)`, `$(VAR:-DEFAULT)` (unset or empty) and `$(VAR-DEFAULT)` (unset).
    func expandEnvironment(_ text: String, _ place: String) throws(ConfigError) -> String {
        try expandReferences(text, sigil: "$") { (inner: String) throws(ConfigError) -> String in
            if let colon = inner.firstIndex(of: ":"), inner[inner.index(after: colon)...].hasPrefix("-") {
                let value = environment[String(inner[..<colon])] ?? ""
                return value.isEmpty ? String(inner[inner.index(colon, offsetBy: 2)...]) : value
            }
            if let dash = inner.firstIndex(of: "-") {
                return environment[String(inner[..<dash])] ?? String(inner[inner.index(after: dash)...])
            }
            guard let value = environment[inner] else {
                throw ConfigError("\(place): $(\(inner)): the environment variable is not set (write $(\(inner):-DEFAULT) for a default)")
            }
            return value
        }
    }

    /// Replaces each `SIGIL(...)` (parentheses may nest inside) with `resolve`'s answer.
    func expandReferences(_ text: String, sigil: Character,
                          _ resolve: (String) throws(ConfigError) -> String) throws(ConfigError) -> String {
        var out = ""
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            let next = text.index(after: i)
            guard c == sigil, next < text.endIndex, text[next] == "(" else { out.append(c); i = next; continue }
            var depth = 0
            var j = text.index(after: next)
            var close: String.Index?
            while j < text.endIndex {
                if text[j] == "(" { depth += 1 }
                if text[j] == ")" { if depth == 0 { close = j; break }; depth -= 1 }
                j = text.index(after: j)
            }
            guard let close else { out += text[i...]; break }
            out += try resolve(String(text[text.index(after: next)..<close]))
            i = text.index(after: close)
        }
        return out
    }

    /// Expands every line: `$(...)` first, then `%(...)` (recursively; a cycle is an error).
    /// Returns the lines and the keys some reference named.
    func expanded() throws(ConfigError) -> (lines: [IniLine], referenced: Set<String>) {
        var withEnvironment = lines
        for n in withEnvironment.indices {
            withEnvironment[n].value = try expandEnvironment(withEnvironment[n].value, withEnvironment[n].place)
        }
        var referenced = Set<String>()
        var done: [String: String] = [:]

        func value(of key: String, at place: String, chain: [String]) throws(ConfigError) -> String {
            if let known = done[key] { return known }
            guard chain.count < IniReader.maxDepth else {
                throw ConfigError("\(place): %(\(key)): references nest more than \(IniReader.maxDepth) deep")
            }
            if chain.contains(key) {
                throw ConfigError("\(place): %(\(key)) refers to itself: \((chain + [key]).joined(separator: " -> "))")
            }
            guard let line = withEnvironment.first(where: { $0.key == key }) else {
                if key.contains(" ") {
                    throw ConfigError("\(place): %(\(key)): uWSGI's arithmetic in references is not supported")
                }
                throw ConfigError("\(place): %(\(key)) refers to no key of the ini files")
            }
            let result = try expand(line.value, at: line.place, chain: chain + [key])
            done[key] = result
            return result
        }
        func expand(_ text: String, at place: String, chain: [String]) throws(ConfigError) -> String {
            let result = try expandReferences(text, sigil: "%") { (key: String) throws(ConfigError) -> String in
                referenced.insert(key)
                return try value(of: key, at: place, chain: chain)
            }
            guard result.utf8.count <= IniReader.maxValueLength else {
                throw ConfigError("\(place): the value grows beyond \(IniReader.maxValueLength) bytes once its references are expanded")
            }
            return result
        }
        var out = withEnvironment
        for n in out.indices {
            out[n].value = try expand(out[n].value, at: out[n].place, chain: [])
        }
        return (out, referenced)
    }

    /// The option entries of the ini files read, and their warnings.
    func entries() throws(ConfigError) -> (entries: [Entry], warnings: [String]) {
        let (lines, referenced) = try expanded()
        var entries: [Entry] = []
        var warnings: [String] = []
        for line in lines {
            let name = normalizedKey(line.key)
            guard !line.placeholderOnly, let found = index.long[name] else {
                if line.placeholderOnly || referenced.contains(line.key) { continue }
                if let warning = try unknownIniKey(line.key, name: name, place: line.place, index) {
                    warnings.append(warning)
                }
                continue
            }
            guard found.spec.sources.contains(.iniFile) else {
                throw ConfigError("\(line.place): \(quoted(line.key)) cannot be set in an ini file")
            }
            entries.append(Entry(spec: found.spec, raw: line.value, origin: "\(line.place): \(line.key)",
                                 negated: found.negated))
        }
        return (entries, warnings)
    }
}

/// `Enable_Threads` → `enable-threads`.
func normalizedKey(_ key: String) -> String {
    String(key.lowercased().map { $0 == "_" ? "-" : $0 })
}

/// A key that is no option and no placeholder: an error. (uWSGI keys that have no effect in
/// Apus are options of their own, declared with their note in Options.swift.)
func unknownIniKey(_ key: String, name: String, place: String, _ index: OptionIndex) throws(ConfigError) -> String? {
    throw ConfigError("\(place): unknown key \(quoted(key))" + index.suggestion(for: name, prefix: ""))
}

/// An open `if-...` block.
struct IfBlock {
    enum Test: String {
        case env = "if-env", notEnv = "if-not-env", exists = "if-exists", notExists = "if-not-exists"
        case file = "if-file", notFile = "if-not-file", dir = "if-dir", notDir = "if-not-dir"
        case opt = "if-opt", notOpt = "if-not-opt"
    }
    static let aliases: [String: Test] = ["ifenv": .env, "ifexists": .exists, "ifdir": .dir, "if-directory": .dir]

    let key: String
    let place: String
    var taken: Bool
    /// What `%(_)` stands for inside the block.
    let underscore: String?

    init(test: Test, key: String, argument: String, place: String, reader: IniReader) throws(ConfigError) {
        self.key = key
        self.place = place
        let argument = try reader.expandEnvironment(argument, place)
        guard !argument.isEmpty else { throw ConfigError("\(place): \(key): missing its argument") }
        let fs = reader.fileSystem
        switch test {
        case .env, .notEnv, .opt, .notOpt:
            // NAME or NAME=VALUE: set (and equal to VALUE).
            let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            let current = (test == .env || test == .notEnv) ? reader.environment[name] : reader.firstValue(of: name)
            let holds = current != nil && (parts.count == 1 || current == String(parts[1]))
            taken = (test == .env || test == .opt) ? holds : !holds
            underscore = current
        case .exists, .notExists:
            let there = fs.isFile(argument) || fs.isDirectory(argument)
            taken = test == .exists ? there : !there
            underscore = argument
        case .file, .notFile:
            taken = fs.isFile(argument) == (test == .file)
            underscore = argument
        case .dir, .notDir:
            taken = fs.isDirectory(argument) == (test == .dir)
            underscore = argument
        }
    }
}
