// `apus --print-config`: every option's effective value and where it came from. The values
// are the raw values the resolver applied (so they are in the option's own syntax), kept per
// option by the same rule the option applies them with; nothing here knows any option by name
// except the binds, whose default is derived from PORT.

/// The entries that decided each option, recorded as the resolver applies them.
struct AppliedValues {
    private(set) var byOption: [String: [Entry]] = [:]

    /// Lists: the highest layer that gives the option replaces lower ones; `KEY=VALUE` options
    /// accumulate; anything else: the last value wins.
    mutating func record(_ entry: Entry, layer: Layer, first: Bool) {
        let name = entry.spec.name
        switch entry.spec.kind {
        case .list:
            if first { byOption[name] = [] }
            byOption[name, default: []].append(entry)
        case .keyValue:
            let key = entry.raw.split(separator: "=", maxSplits: 1).first.map(String.init) ?? entry.raw
            byOption[name, default: []].removeAll { $0.raw.split(separator: "=", maxSplits: 1).first.map(String.init) == key }
            byOption[name, default: []].append(entry)
        default:
            byOption[name] = [entry]
        }
    }
}

/// The text `--print-config` prints: one `name = value` line per value, in the order of the
/// option table, each with its origin: a flag (`--workers`), a variable (`APUS_PROCESSES`), an
/// ini file's `file:line: key`, `application argument`, `default`, or `not set`.
func describeConfiguration(_ applied: AppliedValues, _ config: Configuration, index: OptionIndex,
                           environment: [String: String]) -> String {
    var rows: [(String, String)] = []
    let bindOptions = ["http", "socket", "fd"]
    let bindsGiven = bindOptions.contains { applied.byOption[$0] != nil }
    for spec in index.specs where spec.action == nil || spec.action == .ini {
        if let entries = applied.byOption[spec.name] {
            for entry in entries { rows.append(("\(spec.name) = \(shownValue(entry))", entry.origin)) }
            continue
        }
        if bindOptions.contains(spec.name) && !bindsGiven {
            // The binds nobody gave: the default one, PORT's, or sockets inherited from systemd.
            let derived = config.binds.filter {
                spec.name == "socket" ? $0.proto == .uwsgi : spec.name == "http" && $0.proto != .uwsgi
            }
            for bind in derived {
                let origin: String
                if case .fd = bind.address { origin = "LISTEN_FDS (systemd socket activation)" }
                else if let port = environment["PORT"], !port.isEmpty { origin = "PORT" }
                else { origin = "default" }
                rows.append(("\(spec.name) = \(bind.address.text)", origin))
            }
            if !derived.isEmpty { continue }
        }
        rows.append(defaultRow(spec))
    }
    let width = min(48, rows.map(\.0.count).max() ?? 0)
    let lines = rows.map { line, origin in
        line + String(repeating: " ", count: max(1, width + 2 - line.count)) + "# " + origin
    }
    return (lines + config.warnings.map { "# warning: " + $0 }).joined(separator: "\n") + "\n"
}

/// A flag shows on or off (after its negation); anything else its raw value.
private func shownValue(_ entry: Entry) -> String {
    guard entry.spec.kind == .flag else { return entry.raw }
    let on = !["false", "0", "no", "off"].contains(entry.raw.lowercased())
    return on != entry.negated ? "on" : "off"
}

/// `name = DEFAULT  # default` when the table's default text is a value of the option (it is
/// tried on a scratch configuration), else the text as a note.
private func defaultRow(_ spec: OptionSpec) -> (String, String) {
    guard let text = spec.defaultText else { return (spec.name, "not set") }
    var scratch = Draft()
    let ctx = SetContext(origin: "default", layer: .commandLine, firstInLayer: true, negated: false,
                         fileSystem: NoFileSystem())
    if (try? spec.set(&scratch, text, ctx)) == nil {
        return (spec.name, "not set (default: \(text))")
    }
    return ("\(spec.name) = \(text)", "default")
}

/// Defaults are never paths that must exist.
private struct NoFileSystem: FileSystem {
    func isDirectory(_ path: String) -> Bool { false }
    func isFile(_ path: String) -> Bool { false }
    func read(_ path: String) -> String? { nil }
}
