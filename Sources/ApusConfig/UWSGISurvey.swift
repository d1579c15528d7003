// What Apus does with the uWSGI options that real deployments use.

/// The 61 options found in 5 or more of 176 public uwsgi.ini files (87 Django projects, 79
/// Flask ones), most used first; "a/b" are two spellings counted together. Each one must
/// either work in Apus or have a `UWSGINote` (a test holds the list to that).
public let uwsgiSurveyKeys: [String] = [
    "master", "processes/workers", "module", "socket", "chdir", "vacuum", "http/http-socket", "threads",
    "enable-threads", "chmod-socket", "wsgi-file", "callable", "uid", "die-on-term", "gid", "harakiri",
    "buffer-size", "max-requests", "pidfile", "env", "virtualenv/home", "static-map", "plugins", "logto",
    "single-interpreter", "disable-logging", "touch-reload", "pythonpath", "lazy-apps", "stats", "daemonize",
    "memory-report", "thunder-lock", "need-app", "post-buffering", "chown-socket", "reload-on-rss",
    "disable-write-exception", "http-timeout", "logger", "strict", "auto-procname", "cheaper", "ignore-sigpipe",
    "log-format", "ignore-write-errors", "listen", "log-date", "log-master", "hook-master-start",
    "offload-threads", "attach-daemon", "harakiri-verbose", "ini", "log-5xx", "log-maxsize",
    "worker-reload-mercy", "manage-script-name", "py-autoreload", "route", "socket-timeout",
]

/// What one uWSGI key does in Apus.
public enum UWSGIKeyStatus: Equatable, Sendable {
    /// It sets this Apus option (`negated`: turns the flag off, as `disable-logging` does).
    case works(option: String, negated: Bool)
    case noEffect(String)
    case refused(String)
    /// Not an Apus option: an unknown key is an error.
    case unknown

    public init(key: String) {
        guard let found = OptionIndex(for: .server).long[key] else { self = .unknown; return }
        switch found.spec.note {
        case let .noEffect(note)?: self = .noEffect(note)
        case let .refused(reason)?: self = .refused(reason)
        case nil: self = .works(option: found.spec.name, negated: found.negated)
        }
    }

    var markdown: String {
        switch self {
        case let .works(option, false): "works: `--\(option)`"
        case let .works(option, true): "works: turns `--\(option)` off"
        case let .noEffect(note): "accepted, no effect: \(note)"
        case let .refused(reason): "refused (an error): \(reason)"
        case .unknown: "not in Apus: an unknown key is an error"
        }
    }
}

/// The section of docs/options.md that lists every surveyed key and its status.
func uwsgiSurveyMarkdown() -> [String] {
    var out = ["## uWSGI options in real ini files", ""]
    out.append("The \(uwsgiSurveyKeys.count) options found in 5 or more of 176 public uwsgi.ini files (87 Django projects, 79 Flask ones), most used first, and what Apus does with each. docs/migrating-from-uwsgi.md goes through them with examples.")
    out.append("")
    out.append("| uWSGI key | In Apus |")
    out.append("|---|---|")
    for entry in uwsgiSurveyKeys {
        for key in entry.split(separator: "/").map(String.init) {
            out.append("| `\(key)` | \(UWSGIKeyStatus(key: key).markdown.replacingPipesInCell()) |")
        }
    }
    return out
}

extension String {
    fileprivate func replacingPipesInCell() -> String {
        String(flatMap { $0 == "|" ? ["\\", "|"] : [$0] })
    }
}
