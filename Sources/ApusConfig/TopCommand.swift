// `apus top ADDR [--interval S]`: the live view of a stats server (Sources/ApusTop).
//
// Its arguments are parsed here, not declared in the option table (Options.swift): the table
// makes every option a setting of the server with an APUS_* variable, an ini key and a
// Configuration field, while `top` is a client with one address and one option that no ini
// file or environment should change (an APUS_INTERVAL would be a server setting by its name).
// So `top` takes exactly its own arguments, and nothing from ini files or the environment.

public let topUsage = """
    Usage: apus top ADDR [--interval S]

    A live view of a stats server (apus --stats ADDR, or uWSGI's --stats): workers, requests
    per second, latency, generations and reloads in progress. ADDR: HOST:PORT, :PORT,
    [IPV6]:PORT, unix:PATH or a socket path, or http://HOST:PORT/ for a stats server that
    speaks HTTP (--stats-http). Redraws every S seconds (default 1); q or Ctrl-C quits.
    When stdout is not a terminal, prints one snapshot as plain text and exits.
    """

/// The default seconds between two polls.
let topDefaultInterval = 1.0

/// `apus top`'s arguments (after the word `top`) → the command.
func parseTopArguments(_ arguments: [String], fileSystem: any FileSystem) throws(ConfigError) -> Command {
    var address: String?
    var interval = topDefaultInterval
    var i = 0
    var optionsEnded = false
    while i < arguments.count {
        let arg = arguments[i]
        i += 1
        if !optionsEnded && (arg == "-h" || arg == "--help") { return .help(topUsage) }
        if !optionsEnded && arg == "--" { optionsEnded = true; continue }
        if !optionsEnded && (arg == "--interval" || arg.hasPrefix("--interval=")) {
            let value: String
            if arg == "--interval" {
                guard i < arguments.count else { throw ConfigError("top: --interval needs a number of seconds") }
                value = arguments[i]
                i += 1
            } else {
                value = String(arg.dropFirst("--interval=".count))
            }
            let ctx = SetContext(origin: "top --interval", layer: .commandLine, firstInLayer: true,
                                 negated: false, fileSystem: fileSystem)
            interval = try parseSeconds(value, allowZero: false, ctx)
            guard interval >= 0.1 else { throw ctx.fail("must be at least 0.1 seconds, got \(quoted(value))") }
            continue
        }
        if !optionsEnded && arg.hasPrefix("-") && arg.count > 1 {
            throw ConfigError("top: unknown option \(quoted(arg)) (apus top ADDR [--interval S])")
        }
        guard address == nil else { throw ConfigError("top: one address only, got \(quoted(address!)) and \(quoted(arg))") }
        address = arg
    }
    guard let address, !address.isEmpty else {
        throw ConfigError("top: which stats server? apus top ADDR [--interval S] (ADDR as given to --stats)")
    }
    return .top(address: address, interval: interval)
}
