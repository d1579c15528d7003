// `--help` and docs/options.md, both generated from the option table.

let usageLines = [
    "apus [OPTIONS] MODULE[:CALLABLE]",
    "apus [OPTIONS] --wsgi-file FILE",
    "apus router --http ADDR --subscription-server ADDR [OPTIONS]",
    "apus top ADDR [--interval S]",
    "apus --from-gunicorn gunicorn.conf.py",
]

let positionalHelp = "The application to serve, e.g. app.wsgi or hello:application (callable defaults to application, then app)."

let precedenceText = "Settings come from, lowest precedence first: defaults, ini files (--ini, -c or APUS_INI), APUS_* environment variables, APUS_CMD_ARGS (command-line arguments in one variable, split as a POSIX shell would, like Gunicorn's GUNICORN_CMD_ARGS), the command line. Sizes are bytes with an optional k, m or g suffix; durations are seconds (fractions allowed)."

private func spellings(_ spec: OptionSpec) -> (main: String, also: [String], off: [String]) {
    let main = "--" + spec.name + (spec.takesValue ? " " + spec.valueName : "")
    let also = spec.shortAliases.map { "-\($0)" } + spec.aliases.map { "--\($0)" }
    return (main, also, spec.negations.map { "--\($0)" })
}

/// ", comma-separated" for list options' environment variables.
private func separatorNote(_ spec: OptionSpec) -> String {
    guard let sep = spec.environmentSeparator else { return "" }
    return sep == "," ? ", comma-separated" : ", \(sep)-separated"
}

private func wrap(_ text: String, width: Int, indent: String) -> [String] {
    var lines: [String] = []
    var line = indent
    for word in text.split(separator: " ") {
        if line.count > indent.count && line.count + 1 + word.count > width {
            lines.append(line)
            line = indent
        }
        line += (line.count > indent.count ? " " : "") + word
    }
    if line.count > indent.count { lines.append(line) }
    return lines
}

/// The text `apus --help` prints.
public func helpText() -> String {
    var out: [String] = []
    out.append("Usage: " + usageLines[0])
    out += usageLines.dropFirst().map { "       " + $0 }
    out.append("")
    out += wrap("Serve a Python WSGI application with a master process and prefork workers. " + precedenceText,
                width: 80, indent: "")
    let specs = OptionSpec.all
    for section in OptionSection.allCases {
        out.append("")
        out.append(section.rawValue + ":")
        if section == .application {
            out.append("  MODULE[:CALLABLE]")
            out += wrap(positionalHelp, width: 80, indent: "      ")
        }
        for spec in specs where spec.section == section {
            let (main, also, off) = spellings(spec)
            var names = also.isEmpty ? [] : ["also " + also.joined(separator: ", ")]
            if !off.isEmpty { names.append("off: " + off.joined(separator: ", ")) }
            out.append("  " + main + (names.isEmpty ? "" : "  (" + names.joined(separator: "; ") + ")"))
            out += wrap(spec.help, width: 80, indent: "      ")
            var facts: [String] = []
            if let d = spec.defaultText { facts.append("[default: \(d)]") }
            if let v = spec.environmentVariable { facts.append("[env: \(v)\(separatorNote(spec))]") }
            let joined = "      " + facts.joined(separator: " ")
            if joined.count <= 80 {
                if !facts.isEmpty { out.append(joined) }
            } else {
                out += facts.map { "      " + $0 }
            }
        }
    }
    return out.joined(separator: "\n") + "\n"
}

private func cell(_ s: String) -> String { s.replacingPipes() }

extension String {
    fileprivate func replacingPipes() -> String {
        String(flatMap { $0 == "|" ? ["\\", "|"] : [$0] })
    }
}

/// docs/options.md. A test keeps the file identical to this.
public func optionsMarkdown() -> String {
    var out: [String] = []
    out.append("# Apus options")
    out.append("")
    out.append("<!-- Generated from Sources/ApusConfig/Options.swift by optionsMarkdown(); do not edit by hand.")
    out.append("     Regenerate with: APUS_WRITE_DOCS=1 swift test --filter ApusConfigTests -->")
    out.append("")
    out.append("```")
    out += usageLines
    out.append("```")
    out.append("")
    out.append(precedenceText)
    out.append("")
    out.append("## Syntax")
    out.append("")
    out.append("- Command line: `--name value`, `--name=value`, short `-w 4` or `-w4`; `--` ends the options.")
    out.append("- Flags take no value on the command line (`--preload`); `--preload=false` works, and environment variables and ini files take `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`.")
    out.append("- Environment: each option's variable is `APUS_` plus its name in upper case with `_` for `-`. Empty variables are ignored. Repeatable options take several values separated as noted below.")
    out.append("- Repeatable options append within one source; a source with higher precedence replaces the values of lower ones (`--http` on the command line replaces `http =` from an ini file). `--env` merges by variable name.")
    out.append("- Addresses: `HOST:PORT`, `:PORT` (all IPv4 addresses), `[IPV6]:PORT`, `unix:PATH`, a socket path starting with `/`, `./` or `../`, or `fd://N` (a listening socket inherited from the parent; its backlog is the parent's). Duplicates are removed.")
    out.append("- Sockets passed by systemd (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`) are served as well: a `--http`/`--socket` at the same address, or `fd://N`, adopts the socket with its protocol; any other speaks HTTP, or uwsgi when its name is `uwsgi`.")
    out.append("- Without any `--http`, `--socket`, `--fd` or systemd socket, Apus listens on `\(BindDefaults.portBindHost):$PORT` when `PORT` is set, otherwise on `\(BindDefaults.bind.address.text)`.")
    let routerOptions = OptionSpec.all.filter { $0.commands.contains(.router) }.map { "`--\($0.name)`" }
    out.append("- `apus router ...` runs the subscription router (docs/reloading.md, \"Subscription router\") instead of a server; it takes no application and only these options: " + routerOptions.joined(separator: ", ") + ". A module named `router` is given as `--module router`.")
    out.append("- `apus top ADDR [--interval S]` shows a stats server (`--stats`, or uWSGI's) live in the terminal (docs/observability.md, \"apus top\"); it takes only these arguments (`apus top --help`). A module named `top` is given as `--module top`.")
    out.append("")
    out.append("## Ini files")
    out.append("")
    out.append("uWSGI style: the `[uwsgi]` and `[apus]` sections are read and others ignored; `key = value` lines where the key is any long option name or alias without dashes (`_` may replace `-`); repeating a key of a repeatable option adds a value; lines starting with `#` or `;` are comments.")
    out.append("")
    out.append("uWSGI options that have no effect in Apus are accepted, in ini files and on the command line, with a warning that says why; a few whose silent absence would change what clients get are refused with an error. Both are listed under \"\(OptionSection.uwsgi.rawValue)\" below. Any other unknown key is an error.")
    let specs = OptionSpec.all
    for section in OptionSection.allCases {
        out.append("")
        out.append("## \(section.rawValue)")
        out.append("")
        out.append("| Option | Also | Environment | Default | Description |")
        out.append("|---|---|---|---|---|")
        if section == .application {
            out.append("| `MODULE[:CALLABLE]` (argument) | | | | \(cell(positionalHelp)) |")
        }
        for spec in specs where spec.section == section {
            let (main, also, off) = spellings(spec)
            var alsoCell = also.map { "`\($0)`" }.joined(separator: ", ")
            if !off.isEmpty {
                alsoCell += (alsoCell.isEmpty ? "" : "; ") + "off: " + off.map { "`\($0)`" }.joined(separator: ", ")
            }
            var envCell = spec.environmentVariable.map { "`\($0)`" } ?? ""
            if let sep = spec.environmentSeparator, !envCell.isEmpty {
                envCell += sep == "," ? " (comma-separated)" : " (`\(sep)`-separated)"
            }
            var notes = spec.help
            if case .refused? = spec.note { notes = "Refused: " + notes }
            if !spec.sources.contains(.iniFile) { notes += " Not in ini files." }
            out.append("| `\(main)` | \(alsoCell) | \(envCell) | \(cell(spec.defaultText ?? "")) | \(cell(notes)) |")
        }
    }
    out.append("")
    out += uwsgiSurveyMarkdown()
    return out.joined(separator: "\n") + "\n"
}
