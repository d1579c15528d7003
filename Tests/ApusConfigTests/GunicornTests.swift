import Testing
@testable import ApusConfig
import ApusProtocols

// Gunicorn users' flags, APUS_CMD_ARGS and the translation of gunicorn.conf.py, as values.

// MARK: - Flags

@Test func gunicornCommandLine() {
    let fs = FakeFileSystem.standard
    let c = config(["-w", "2", "-k", "gthread", "--threads", "4", "-b", "127.0.0.1:9000",
                    "--access-logfile", "-", "--error-logfile", "/var/log/err.log", "--log-level", "WARNING",
                    "--pid", "/run/app.pid", "-t", "60", "--graceful-timeout", "20", "--keep-alive", "2",
                    "--max-requests", "100", "--max-requests-jitter", "10", "--preload",
                    "--forwarded-allow-ips", "*", "--chdir", "/srv", "--pythonpath", "/lib/py,/srv",
                    "-e", "A=1", "--env", "B=2", "--user", "www-data", "--group", "www-data",
                    "app:application"], fs: fs)
    var expected = baseline()
    expected.app = AppSpec(module: "app", callable: "application")
    expected.processes = 2
    expected.workerClass = .gthread
    expected.threads = 4
    expected.binds = [tcp("127.0.0.1", 9000)]
    expected.accessLogFile = "-"
    expected.logFile = "/var/log/err.log"
    expected.logLevel = .warning
    expected.pidfile = "/run/app.pid"
    expected.harakiri = 60
    expected.shutdownTimeout = 20
    expected.limits.keepAliveTimeout = 2
    expected.maxRequests = 100
    expected.maxRequestsJitter = 10
    expected.preload = true
    expected.trustedProxies = try! TrustedProxies(parsing: "*")
    expected.chdir = "/srv"
    expected.pythonPath = ["/lib/py", "/srv"]
    expected.env = ["A": "1", "B": "2"]
    expected.uid = "www-data"
    expected.gid = "www-data"
    #expect(c == expected)
}

@Test(arguments: [("sync", WorkerClass.sync), ("gthread", .gthread),
                  ("gunicorn.workers.sync.SyncWorker", .sync), ("gunicorn.workers.gthread.ThreadWorker", .gthread),
                  ("egg:gunicorn#gthread", .gthread)])
func workerClassesTaken(_ raw: String, _ expected: WorkerClass) {
    #expect(config(["-k", raw, "app"])?.workerClass == expected)
    // The class does not set the threads: sync with --threads 4 has 4, as Gunicorn turns it into gthread.
    #expect(config(["-k", raw, "--threads", "4", "app"])?.threads == 4)
    #expect(config(["-k", raw, "app"])?.threads == 1)
}

@Test(arguments: [("gevent", "greenlets"), ("eventlet", "greenlets"), ("gunicorn.workers.ggevent.GeventWorker", "greenlets"),
                  ("tornado", "Tornado"), ("uvicorn.workers.UvicornWorker", "ASGI"), ("aiohttp.worker.GunicornWebWorker", "unknown worker class")])
func workerClassesRefused(_ raw: String, _ why: String) throws {
    let message = try #require(failure(["-k", raw, "app"]))
    #expect(message.hasPrefix("-k: \(quoted(raw))") || message.hasPrefix("-k: unknown worker class \(quoted(raw))"))
    #expect(message.contains(why))
    #expect(!message.contains("\n"))
    #expect(failure(["--worker-class=\(raw)", "app"])?.hasPrefix("--worker-class: ") == true)
}

@Test func logLevels() {
    for level in LogLevel.allCases {
        #expect(config(["--log-level", level.name, "app"])?.logLevel == level)
        #expect(config(["--log-level", level.name.uppercased(), "app"])?.logLevel == level)
    }
    #expect(config(["app"])?.logLevel == .info)
    #expect(failure(["--log-level", "verbose", "app"]) == "--log-level: expected debug, info, warning, error or critical, got \"verbose\"")
    #expect(LogLevel.debug < .info && LogLevel.error < .critical)
}

@Test func logFileDashIsStderr() {
    #expect(config(["--error-logfile", "-", "app"])?.logFile == nil)
    #expect(config(["--log-file", "/var/log/a.log", "--error-logfile", "-", "app"])?.logFile == nil)
    #expect(config(["--access-logfile", "-", "app"])?.accessLogFile == AccessLogDestination.stdout)
    #expect(config(["app"])?.accessLogFile == nil)
    #expect(failure(["--access-logfile=", "app"]) == "--access-logfile: expected a file name or -, got \"\"")
}

@Test func pythonpathTakesCommas() {
    #expect(config(["--pythonpath", "/a,/b", "--pythonpath", "/c", "app"])?.pythonPath == ["/a", "/b", "/c"])
    #expect(config(["app"], env: ["APUS_PYTHONPATH": "/a:/b,/c"])?.pythonPath == ["/a", "/b", "/c"])
    #expect(failure(["--pythonpath", "/a,,/b", "app"]) == "--pythonpath: expected a directory, got \"/a,,/b\"")
}

@Test func configFlag() {
    let fs = FakeFileSystem.standard.with(file: "app.ini", "[apus]\nprocesses = 3\n")
    var expected = baseline()
    expected.processes = 3
    expected.configFiles = ["app.ini"]
    #expect(config(["-c", "app.ini", "app"], fs: fs) == expected)
    #expect(config(["--config", "app.ini", "app"], fs: fs) == expected)
    #expect(failure(["-c", "gunicorn.conf.py", "app"]) == "-c: \"gunicorn.conf.py\" is not an ini file; a gunicorn.conf.py is Python, which Apus does not run: translate it once with apus --from-gunicorn FILE")
    #expect(failure(["--config", "python:site.gunicorn", "app"])?.hasPrefix("--config: \"python:site.gunicorn\" is not an ini file") == true)
}

@Test func gunicornConfInTheDirectoryIsNamed() {
    let fs = FakeFileSystem.standard.with(file: "gunicorn.conf.py", "workers = 4\n")
    #expect(config(["app"], fs: fs)?.warnings == ["./gunicorn.conf.py is not read by Apus (Gunicorn would run it): apus --from-gunicorn gunicorn.conf.py prints the equivalent options"])
    #expect(config(["app"])?.warnings == [])
}

@Test func fromGunicornIsACommand() throws {
    #expect(try resolve(["--from-gunicorn", "g.py"]) == .fromGunicorn(file: "g.py", python: nil, venv: nil))
    #expect(try resolve(["--python", "/usr/bin/python3", "--from-gunicorn", "g.py"])
        == .fromGunicorn(file: "g.py", python: "/usr/bin/python3", venv: nil))
    #expect(failure(["app"], env: ["APUS_CMD_ARGS": "--from-gunicorn g.py"]) == "APUS_CMD_ARGS: --from-gunicorn belongs on the command line")
}

// MARK: - APUS_CMD_ARGS

@Test(arguments: [
    ("-w 4 -b 127.0.0.1:8000", ["-w", "4", "-b", "127.0.0.1:8000"]),
    ("--env \"A=hello world\" -e B='x y'", ["--env", "A=hello world", "-e", "B=x y"]),
    (#"a\ b "c\"d" "e\f" 'g\h'"#, ["a b", "c\"d", "e\\f", "g\\h"]),
    ("  \t ", []),
    ("x\"y\"z", ["xyz"]),
    ("\"\"", [""]),
    ("--access-logfile=\"/tmp/a b.log\"", ["--access-logfile=/tmp/a b.log"]),
])
func shellWordsAsShlexSplits(_ text: String, _ words: [String]) throws {
    // The expected words are what Python's shlex.split returns for the same text.
    #expect(try shellWords(text) == words)
}

@Test func shellWordsRefuseWhatShlexRefuses() {
    #expect(throws: ConfigError.self) { try shellWords("\"abc") }
    #expect(throws: ConfigError.self) { try shellWords("'abc") }
    #expect(throws: ConfigError.self) { try shellWords("abc\\") }
}

@Test func commandArgumentsPrecedence() {
    let fs = FakeFileSystem.standard.with(file: "a.ini", "[apus]\nprocesses = 2\nthreads = 2\nmax-requests = 2\nkeep-alive = 2\n")
    let env = ["APUS_INI": "a.ini", "APUS_THREADS": "3", "APUS_MAX_REQUESTS": "3", "APUS_KEEP_ALIVE": "3",
               "APUS_CMD_ARGS": "--max-requests 4 --keep-alive 4 -w 4"]
    let c = config(["--keep-alive", "5", "app"], env: env, fs: fs)
    #expect(c?.processes == 4)        // APUS_CMD_ARGS over the ini file
    #expect(c?.threads == 3)          // APUS_THREADS over the ini file
    #expect(c?.maxRequests == 4)      // APUS_CMD_ARGS over APUS_MAX_REQUESTS
    #expect(c?.limits.keepAliveTimeout == 5)  // the command line over APUS_CMD_ARGS
}

@Test func commandArgumentsLists() {
    // A list given in APUS_CMD_ARGS replaces the environment's; the command line's replaces both.
    let env = ["APUS_HTTP": ":7000", "APUS_CMD_ARGS": "-b :8001 --bind :8002"]
    #expect(config(["app"], env: env)?.binds == [tcp("0.0.0.0", 8001), tcp("0.0.0.0", 8002)])
    #expect(config(["-b", ":9000", "app"], env: env)?.binds == [tcp("0.0.0.0", 9000)])
}

@Test func commandArgumentsApplication() {
    #expect(config([], env: ["APUS_CMD_ARGS": "--threads 2 site.wsgi"])?.app == AppSpec(module: "site.wsgi"))
    #expect(config(["other"], env: ["APUS_CMD_ARGS": "site.wsgi"])?.app == AppSpec(module: "other"))
}

@Test func commandArgumentsIni() {
    let fs = FakeFileSystem.standard.with(file: "a.ini", "[apus]\nprocesses = 2\n").with(file: "b.ini", "[apus]\nprocesses = 3\n")
    #expect(config(["app"], env: ["APUS_INI": "a.ini", "APUS_CMD_ARGS": "-c b.ini"], fs: fs)?.processes == 3)
    #expect(config(["--ini", "a.ini", "app"], env: ["APUS_CMD_ARGS": "--ini b.ini"], fs: fs)?.processes == 2)
}

@Test func commandArgumentsErrorsNameTheVariable() {
    #expect(failure(["app"], env: ["APUS_CMD_ARGS": "-w zero"]) == "APUS_CMD_ARGS: -w: expected a positive integer, got \"zero\"")
    #expect(failure(["app"], env: ["APUS_CMD_ARGS": "--workers"]) == "APUS_CMD_ARGS: --workers: missing value (expected N)")
    #expect(failure(["app"], env: ["APUS_CMD_ARGS": "--wrokers 2"]) == "APUS_CMD_ARGS: unknown option --wrokers (did you mean --workers?)")
    #expect(failure(["app"], env: ["APUS_CMD_ARGS": "-w '2"]) == "APUS_CMD_ARGS: no closing quotation (')")
    #expect(failure(["app"], env: ["APUS_CMD_ARGS": "-k gevent"])?.hasPrefix("APUS_CMD_ARGS: -k: \"gevent\" needs greenlets") == true)
    #expect(failure(["app"], env: ["APUS_CMD_ARGS": "--help"]) == "APUS_CMD_ARGS: --help and --version belong on the command line")
}

// MARK: - gunicorn.conf.py

/// A typical Django deployment's gunicorn.conf.py, as the Python side reports it.
let djangoConf: [GunicornSetting] = [
    GunicornSetting(name: "bind", line: 3, value: .list([.string("0.0.0.0:8000"), .string("unix:///run/app.sock")])),
    GunicornSetting(name: "workers", line: 4, value: .computed("multiprocessing.cpu_count() * 2 + 1")),
    GunicornSetting(name: "worker_class", line: 5, value: .string("gthread")),
    GunicornSetting(name: "threads", line: 6, value: .int(4)),
    GunicornSetting(name: "timeout", line: 7, value: .int(60)),
    GunicornSetting(name: "preload_app", line: 8, value: .bool(true)),
    GunicornSetting(name: "accesslog", line: 9, value: .string("-")),
    GunicornSetting(name: "errorlog", line: 10, value: .string("-")),
    GunicornSetting(name: "raw_env", line: 11, value: .list([.string("DJANGO_SETTINGS_MODULE=site.settings")])),
    GunicornSetting(name: "umask", line: 12, value: .int(0o027)),
    GunicornSetting(name: "post_fork", line: 14, value: .function),
    GunicornSetting(name: "wsgi_app", line: 17, value: .string("site.wsgi:application")),
]

@Test func translatesADjangoConfig() {
    let t = translateGunicornConfig(djangoConf, file: "gunicorn.conf.py", cores: 4)
    #expect(t.options.map(\.name) == ["http", "http", "worker-class", "threads", "harakiri", "preload",
                                      "access-logfile", "env", "umask"])
    #expect(t.commandLine == "apus --http 0.0.0.0:8000 --http unix:/run/app.sock --worker-class gthread --threads 4 --harakiri 60 --preload --access-logfile - --env DJANGO_SETTINGS_MODULE=site.settings --umask 027 site.wsgi:application")
    #expect(t.notes.count == 3)
    #expect(t.notes[0] == "gunicorn.conf.py:4: workers: computed (multiprocessing.cpu_count() * 2 + 1); Apus takes a number: Gunicorn's usual 2 x cores + 1 is --processes 9 on this machine (4 cores)")
    #expect(t.notes[1].hasPrefix("gunicorn.conf.py:7: timeout: "))
    #expect(t.notes[2].hasPrefix("gunicorn.conf.py:14: post_fork: a server hook"))
    // What it prints resolves to what the file asked for.
    var expected = baseline()
    expected.app = AppSpec(module: "site.wsgi", callable: "application")
    expected.binds = [tcp("0.0.0.0", 8000), unix("/run/app.sock", .http)]
    expected.workerClass = .gthread
    expected.threads = 4
    expected.harakiri = 60
    expected.preload = true
    expected.accessLogFile = "-"
    expected.env = ["DJANGO_SETTINGS_MODULE": "site.settings"]
    expected.umask = 0o027
    #expect(config(try! shellWords(t.commandLine).dropFirst().map { $0 }) == expected)
    let fs = FakeFileSystem.standard.with(file: "g.ini", t.iniSection)
    expected.configFiles = ["g.ini"]
    #expect(config(["--ini", "g.ini"], fs: fs) == expected)
}

@Test func translatesAFlaskConfigWithoutAccessLog() {
    let settings: [GunicornSetting] = [
        GunicornSetting(name: "bind", line: 1, value: .string("127.0.0.1")),
        GunicornSetting(name: "workers", line: 2, value: .int(3)),
        GunicornSetting(name: "loglevel", line: 3, value: .string("debug")),
        GunicornSetting(name: "keepalive", line: 4, value: .int(2)),
        GunicornSetting(name: "forwarded_allow_ips", line: 5, value: .list([.string("10.0.0.1"), .string("10.0.0.2")])),
        GunicornSetting(name: "pythonpath", line: 6, value: .string("/srv,/lib/py")),
        GunicornSetting(name: "daemon", line: 7, value: .bool(false)),
        GunicornSetting(name: "reload", line: 8, value: .bool(true)),
        GunicornSetting(name: "statsd_host", line: 9, value: .string("localhost:8125")),
        GunicornSetting(name: "worker_class", line: 10, value: .string("gevent")),
        GunicornSetting(name: "graceful_timeout", line: 11, value: .float(7.5)),
        GunicornSetting(name: "max_requests", line: 12, value: .float(1000.0)),
    ]
    let t = translateGunicornConfig(settings, file: "conf.py", cores: 2)
    #expect(t.commandLine == "apus --http 127.0.0.1:8000 --processes 3 --log-level debug --keep-alive 2 --forwarded-allow-ips 10.0.0.1,10.0.0.2 --pythonpath /srv,/lib/py --shutdown-timeout 7.5 --max-requests 1000 --no-access-log")
    #expect(t.app == nil)
    #expect(t.notes.map { String($0.prefix(while: { $0 != " " })) }
        == ["conf.py:8:", "conf.py:9:", "conf.py:10:", "conf.py:"])
    #expect(t.notes[2].contains("greenlets"))
    var expected = baseline()
    expected.binds = [tcp("127.0.0.1", 8000)]
    expected.processes = 3
    expected.logLevel = .debug
    expected.limits.keepAliveTimeout = 2
    expected.trustedProxies = try! TrustedProxies(parsing: "10.0.0.1,10.0.0.2")
    expected.pythonPath = ["/srv", "/lib/py"]
    expected.shutdownTimeout = 7.5
    expected.maxRequests = 1000
    expected.accessLog = false
    #expect(config(try! shellWords(t.commandLine).dropFirst() + ["app"]) == expected)
}

@Test func gunicornBinds() {
    #expect(gunicornBind("tcp://10.0.0.1:9000") == "10.0.0.1:9000")
    #expect(gunicornBind("unix:///run/a.sock") == "unix:/run/a.sock")
    #expect(gunicornBind("unix:/run/a.sock") == "unix:/run/a.sock")
    #expect(gunicornBind("fd://3") == "fd://3")
    #expect(gunicornBind("localhost") == "localhost:8000")
    #expect(gunicornBind("[::1]") == "[::1]:8000")
    #expect(gunicornBind("[::1]:9000") == "[::1]:9000")
    #expect(gunicornBind(":9000") == ":9000")
}

@Test func shellQuoting() {
    #expect(shellQuoted("*") == "'*'")
    #expect(shellQuoted("A=it's") == "'A=it'\\''s'")
    #expect(shellQuoted("") == "''")
    #expect(try! shellWords(shellQuoted("A=it's here")) == ["A=it's here"])
}

@Test func readsTheRecordsOfThePythonSide() {
    let text = [
        "value\t3\tbind\tl\ts\t0.0.0.0:8000\ts\tunix:/run/a.sock",
        "value\t4\tthreads\ti\t4",
        "value\t5\tpreload_app\tb\t1",
        "value\t6\taccesslog\tn",
        "value\t7\traw_env\ts\tA=tab\\there\\\\",
        "computed\t8\tworkers\tmultiprocessing.cpu_count()",
        "other\t9\tsecure_scheme_headers\t{'X': 'y'}",
        "function\t10\tpost_fork",
        "value\t11\ttimeout\tf\t30.5",
        "garbage",
    ].joined(separator: "\n")
    #expect(parseGunicornRecords(text) == [
        GunicornSetting(name: "bind", line: 3, value: .list([.string("0.0.0.0:8000"), .string("unix:/run/a.sock")])),
        GunicornSetting(name: "threads", line: 4, value: .int(4)),
        GunicornSetting(name: "preload_app", line: 5, value: .bool(true)),
        GunicornSetting(name: "accesslog", line: 6, value: .none),
        GunicornSetting(name: "raw_env", line: 7, value: .string("A=tab\there\\")),
        GunicornSetting(name: "workers", line: 8, value: .computed("multiprocessing.cpu_count()")),
        GunicornSetting(name: "secure_scheme_headers", line: 9, value: .other("{'X': 'y'}")),
        GunicornSetting(name: "post_fork", line: 10, value: .function),
        GunicornSetting(name: "timeout", line: 11, value: .float(30.5)),
    ])
}

@Test func translatesProxyProtocolModes() {
    func options(_ value: GunicornSetting.Value) -> [String] {
        translateGunicornConfig([GunicornSetting(name: "proxy_protocol", line: 1, value: value),
                                 GunicornSetting(name: "accesslog", line: 2, value: .none)], file: "c.py", cores: 1)
            .options.map(\.name)
    }
    #expect(options(.string("v2")) == ["proxy-protocol"])
    #expect(options(.string("auto")) == ["proxy-protocol"])
    #expect(options(.bool(true)) == ["proxy-protocol"])
    #expect(options(.string("off")) == [])
    #expect(config(["--proxy-allow-from", "10.0.0.1", "app"])?.proxyAllowed == (try! TrustedProxies(parsing: "10.0.0.1")))
}

@Test func gunicornsPidfileFlagGetsAHint() {
    #expect(failure(["-p", "/run/app.pid", "app"]) == "-p: expected a positive integer, got \"/run/app.pid\" (Gunicorn's -p FILE is --pid FILE here; -p is uWSGI's --processes)")
    #expect(failure(["-w", "x", "app"]) == "-w: expected a positive integer, got \"x\"")
    #expect(config(["-p", "3", "app"])?.processes == 3)
}

@Test func procNameBecomesTheMastersTitleName() {
    let t = translateGunicornConfig([GunicornSetting(name: "proc_name", line: 1, value: .string("shop"))],
                                    file: "conf.py", cores: 2)
    #expect(t.commandLine == "apus --proc-name shop --no-access-log")
    #expect(t.notes.allSatisfy { !$0.contains("proc_name") })
}
