import Testing
@testable import ApusConfig
import ApusProtocols

/// One value for one option and the configuration it must produce.
struct Sample: Sendable, CustomTestStringConvertible {
    let name: String
    let value: String
    /// Options that name the application themselves do not get the positional "app".
    let needsApp: Bool
    /// An option of `apus router` only: given after `router`, with a subscription server.
    let router: Bool
    let expected: Configuration

    /// Other options the sample needs (they are part of `expected` too).
    let with: [String]

    init(_ name: String, _ value: String, needsApp: Bool = true, router: Bool = false, with: [String] = [],
         _ change: (inout Configuration) -> Void) {
        self.name = name
        self.value = value
        self.with = with
        self.needsApp = needsApp && !router
        self.router = router
        var c = router ? routerBaseline() : baseline()
        if !needsApp { c.app = AppSpec() }
        change(&c)
        expected = c
    }

    /// The arguments around the option's own.
    var prefix: [String] { router ? ["router"] : [] }
    var suffix: [String] {
        if router { return name == "subscription-server" ? [] : ["--subscription-server", "127.0.0.1:7000"] }
        return with + (needsApp ? ["app"] : [])
    }

    var testDescription: String { "--\(name) \(value)" }

    var spec: OptionSpec { OptionSpec.all.first { $0.name == name }! }
}

let samples: [Sample] = [
    Sample("module", "hello:application", needsApp: false) { $0.app = AppSpec(module: "hello", callable: "application") },
    Sample("wsgi-file", "app.py", needsApp: false) { $0.app = AppSpec(wsgiFile: "app.py") },
    Sample("callable", "make_app") { $0.app.callable = "make_app" },
    Sample("mount", "/api") { $0.scriptName = "/api" },
    Sample("chdir", "/srv") { $0.chdir = "/srv" },
    Sample("static-map", "/static/=/srv") { $0.staticMaps = [StaticMap(mount: "/static", directory: "/srv")] },
    Sample("http", "127.0.0.1:9000") { $0.binds = [tcp("127.0.0.1", 9000)] },
    Sample("socket", "/tmp/app.sock") { $0.binds = [unix("/tmp/app.sock", .uwsgi)] },
    Sample("fd", "3") { $0.binds = [Bind(address: .fd(3), proto: .http)] },
    Sample("zerg", "/run/zerg.sock") { $0.zerg = ["/run/zerg.sock"] },
    Sample("zerg-server", "/run/zerg.sock", needsApp: false) { $0.zergServer = "/run/zerg.sock" },
    Sample("protocol", "http") { $0.zergProtocol = .http },
    Sample("backlog", "128") { $0.listenBacklog = 128 },
    Sample("chmod-socket", "666") { $0.socketMode = 0o666 },
    Sample("chown-socket", "www-data:www-data") { $0.socketOwner = "www-data:www-data" },
    Sample("forwarded-allow-ips", "10.0.0.0/8, ::1,unix") { $0.trustedProxies = try! TrustedProxies(parsing: "10.0.0.0/8, ::1,unix") },
    Sample("proxy-protocol", "true") { $0.proxyProtocol = true },
    Sample("reuse-port", "true") { $0.reusePort = true },
    Sample("proxy-allow-ips", "10.0.0.0/8,unix") { $0.proxyAllowed = try! TrustedProxies(parsing: "10.0.0.0/8,unix") },
    Sample("max-connections", "500") { $0.maxConnections = 500 },
    Sample("limit-request-field-size", "4k") { $0.limits.maxFieldBytes = 4096 },
    Sample("body-timeout", "12") { $0.limits.bodyTimeout = 12 },
    Sample("master-fifo", "/run/apus.fifo") { $0.masterFIFO = "/run/apus.fifo" },
    Sample("stats", "127.0.0.1:1717") { $0.statsBind = Bind(address: .tcp(host: "127.0.0.1", port: 1717), proto: .http) },
    Sample("stats-http", "true") { $0.statsHTTP = true },
    Sample("metrics", "/run/apus-metrics.sock") { $0.metricsBind = Bind(address: .unix(path: "/run/apus-metrics.sock"), proto: .http) },
    Sample("shutdown-delay", "5") { $0.shutdownDelay = 5 },
    Sample("touch-reload", "/srv/reload") { $0.touchReload = "/srv/reload" },
    Sample("touch-workers-reload", "/srv/w") { $0.touchWorkersReload = "/srv/w" },
    Sample("touch-chain-reload", "/srv/c") { $0.touchChainReload = "/srv/c" },
    Sample("pidfile", "/run/apus.pid") { $0.pidfile = "/run/apus.pid" },
    Sample("warmup", "/health") { $0.warmupPath = "/health" },
    Sample("reload-mercy", "10") { $0.reloadMercy = 10 },
    Sample("harakiri", "20") { $0.harakiri = 20 },
    Sample("harakiri-verbose", "true") { $0.harakiriVerbose = true },
    Sample("max-requests", "1000") { $0.maxRequests = 1000 },
    Sample("max-requests-jitter", "50") { $0.maxRequestsJitter = 50 },
    Sample("max-worker-lifetime", "3600") { $0.maxWorkerLifetime = 3600 },
    Sample("reload-on-rss", "512") { $0.reloadOnRSS = 512 },
    Sample("evil-reload-on-rss", "1024") { $0.evilReloadOnRSS = 1024 },
    Sample("cheaper", "2", with: ["--processes", "4"]) { $0.cheaper = 2; $0.processes = 4 },
    Sample("cheaper-idle", "30") { $0.cheaperIdle = 30 },
    Sample("uid", "www-data") { $0.uid = "www-data" },
    Sample("gid", "1000") { $0.gid = "1000" },
    Sample("umask", "027") { $0.umask = 0o27 },
    Sample("reload-timeout", "2.5") { $0.reloadTimeout = 2.5 },
    Sample("log-file", "/var/log/apus.log") { $0.logFile = "/var/log/apus.log" },
    Sample("processes", "4") { $0.processes = 4 },
    Sample("threads", "8") { $0.threads = 8 },
    Sample("worker-class", "gthread") { $0.workerClass = .gthread },
    Sample("access-logfile", "/var/log/access.log") { $0.accessLogFile = "/var/log/access.log" },
    Sample("log-level", "warning") { $0.logLevel = .warning },
    Sample("preload", "true") { $0.preload = true },
    Sample("shutdown-timeout", "2.5") { $0.shutdownTimeout = 2.5 },
    Sample("python", "/usr/bin/python3") { $0.python = "/usr/bin/python3" },
    Sample("venv", "/venv") { $0.venv = "/venv" },
    Sample("pythonpath", "/lib/py") { $0.pythonPath = ["/lib/py"] },
    Sample("env", "GREETING=a=b") { $0.env = ["GREETING": "a=b"] },
    Sample("uwsgi-module", "false") { $0.uwsgiModule = false },
    Sample("py-autoreload", "3") { $0.autoreload = 3 },
    Sample("reload", "true") { $0.autoreload = 1 },
    Sample("limit-request-line", "4k") { $0.limits.maxRequestLine = 4096 },
    Sample("limit-request-fields", "50") { $0.limits.maxHeaderCount = 50 },
    Sample("limit-request-headers-size", "32k") { $0.limits.maxHeaderBytes = 32768 },
    Sample("limit-request-body", "0") { $0.limits.maxBodyBytes = 0 },
    Sample("body-buffer-size", "2m") { $0.limits.bodyMemoryBytes = 2 << 20 },
    Sample("header-timeout", "0.5") { $0.limits.headTimeout = 0.5 },
    Sample("keep-alive", "0") { $0.limits.keepAliveTimeout = 0 },
    Sample("access-log", "false") { $0.accessLog = false },
    Sample("process-titles", "false") { $0.processTitles = false },
    Sample("proc-name", "shop") { $0.procName = "shop" },
    Sample("procname-prefix", "web-") { $0.processTitlePrefix = "web-" },
    Sample("procname-prefix-spaced", "web") { $0.processTitlePrefix = "web " },
    Sample("daemonize", "/var/log/apus.log") { $0.daemonize = true; $0.logFile = "/var/log/apus.log" },
    Sample("logger", "file:/var/log/apus.log") { $0.logFile = "/var/log/apus.log" },
    Sample("log-maxsize", "1m", with: ["--log-file", "/var/log/apus.log"]) { $0.logMaxSize = 1 << 20; $0.logFile = "/var/log/apus.log" },
    Sample("log-format", "json") { $0.accessLogFormat = try! LogFormat(compiling: "json") },
    Sample("log-x-forwarded-for", "true") { $0.logXForwardedFor = true },
    Sample("log-4xx", "true") { $0.accessLogAlso.status4xx = true },
    Sample("log-5xx", "true") { $0.accessLogAlso.status5xx = true },
    Sample("log-zero", "true") { $0.accessLogAlso.zeroBody = true },
    Sample("log-slow", "250") { $0.accessLogAlso.slowMilliseconds = 250 },
    Sample("log-big", "1m") { $0.accessLogAlso.bigBytes = 1 << 20 },
    Sample("attach-daemon", "celery -A proj worker") { $0.attachDaemons = ["celery -A proj worker"] },
    Sample("subscribe-to", "127.0.0.1:3031=127.0.0.1:7000:example.com:8080") {
        $0.subscriptions = [Subscription(server: .inet(host: "127.0.0.1", port: 7000), key: "example.com:8080",
                                         address: "127.0.0.1:3031")]
    },
    Sample("subscribe-freq", "2.5") { $0.subscribeFrequency = 2.5 },
    Sample("subscription-server", "127.0.0.1:7001", router: true) {
        $0.router.subscriptionServer = .inet(host: "127.0.0.1", port: 7001)
    },
    Sample("subscription-algo", "lrc", router: true) { $0.router.algorithm = .leastConnections },
    Sample("subscription-tolerance", "30", router: true) { $0.router.tolerance = 30 },
]

/// Every spelling of the sample's option on the command line, as argument lists.
func commandLineForms(_ sample: Sample) -> [[String]] {
    let spec = sample.spec
    var forms: [[String]] = []
    for name in [spec.name] + spec.aliases {
        if spec.takesValue { forms.append(["--\(name)", sample.value]) }
        forms.append(["--\(name)=\(sample.value)"])
    }
    for letter in spec.shortAliases {
        forms.append(["-\(letter)", sample.value])
        forms.append(["-\(letter)\(sample.value)"])
    }
    return forms
}

@Test func everyOptionHasASample() {
    // uWSGI options without effect or refused have their own tests (UWSGICompatibilityTests).
    let settable = OptionSpec.all.filter { $0.action == nil && $0.note == nil }.map(\.name)
    #expect(Set(samples.map(\.name)) == Set(settable))
}

@Test(arguments: samples)
func commandLine(_ sample: Sample) {
    for form in commandLineForms(sample) {
        let args = sample.prefix + form + sample.suffix
        #expect(config(args) == sample.expected, "\(args)")
    }
}

@Test(arguments: samples)
func environmentVariable(_ sample: Sample) {
    let variable = sample.spec.environmentVariable!
    #expect(variable == "APUS_" + sample.name.uppercased().replacing("-", with: "_"))
    let args = sample.prefix + sample.suffix
    #expect(config(args, env: [variable: sample.value]) == sample.expected)
}

@Test(arguments: samples)
func iniFile(_ sample: Sample) {
    let spec = sample.spec
    let keys = [spec.name, spec.name.replacing("-", with: "_")] + spec.aliases
    for (n, key) in keys.enumerated() {
        let section = n.isMultiple(of: 2) ? "[apus]" : "[uwsgi]"
        let fs = FakeFileSystem.standard.with(file: "/etc/app.ini", "\(section)\n\(key) = \(sample.value)\n")
        var expected = sample.expected
        expected.configFiles = ["/etc/app.ini"]
        let args = sample.prefix + ["--ini", "/etc/app.ini"] + sample.suffix
        #expect(config(args, fs: fs) == expected, "ini key \(key)")
    }
}

@Test func flagsTakeNoValueOnTheCommandLine() {
    var expected = baseline()
    expected.preload = true
    #expect(config(["--preload", "app"]) == expected)
    #expect(config(["--preload-app", "app"]) == expected)
    #expect(config(["app", "--preload"]) == expected)
    #expect(config(["--access-log", "app"]) == baseline())
}

@Test(arguments: ["true", "1", "yes", "on", "TRUE", "Yes"])
func trueSpellings(_ value: String) {
    #expect(config(["--preload=\(value)", "app"])?.preload == true)
    #expect(config(["app"], env: ["APUS_PRELOAD": value])?.preload == true)
}

@Test(arguments: ["false", "0", "no", "off", "False", "OFF"])
func falseSpellings(_ value: String) {
    #expect(config(["--preload=\(value)", "app"], env: ["APUS_PRELOAD": "1"])?.preload == false)
    #expect(config(["app"], env: ["APUS_PRELOAD": value])?.preload == false)
}

@Test func negations() {
    #expect(config(["--lazy-apps", "app"], env: ["APUS_PRELOAD": "true"])?.preload == false)
    #expect(config(["--lazy-apps=false", "app"])?.preload == true)
    #expect(config(["--no-access-log", "app"])?.accessLog == false)
    #expect(config(["--disable-logging", "app"])?.accessLog == false)
    #expect(config(["--no-access-log=false", "app"])?.accessLog == true)
    let fs = FakeFileSystem.standard.with(file: "u.ini", "[uwsgi]\nlazy-apps = true\ndisable-logging = true\n")
    let c = config(["--ini", "u.ini", "--preload", "app"], fs: fs)
    #expect(c?.preload == true)
    #expect(c?.accessLog == false)
}
