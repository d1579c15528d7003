import Testing
@testable import ApusConfig

/// Keys of the survey that parallel branches implement (static files, Python autoreload):
/// until they land, an unknown key is an error, which is not silent either.
let surveyKeysBuiltElsewhere: Set<String> = ["static-map", "py-autoreload"]

@Test func everySurveyedKeyWorksOrHasANote() {
    #expect(uwsgiSurveyKeys.count == 61)
    for entry in uwsgiSurveyKeys {
        for key in entry.split(separator: "/").map(String.init) where !surveyKeysBuiltElsewhere.contains(key) {
            #expect(UWSGIKeyStatus(key: key) != .unknown, "\(key) is neither an Apus option nor noted")
        }
    }
}

@Test func surveyedKeysResolveAsTheyShould() {
    #expect(UWSGIKeyStatus(key: "workers") == .works(option: "processes", negated: false))
    #expect(UWSGIKeyStatus(key: "disable-logging") == .works(option: "access-log", negated: true))
    #expect(UWSGIKeyStatus(key: "logto") == .works(option: "log-file", negated: false))
    #expect(UWSGIKeyStatus(key: "daemonize") == .works(option: "daemonize", negated: false))
    guard case .noEffect = UWSGIKeyStatus(key: "master") else { Issue.record("master"); return }
    guard case .refused = UWSGIKeyStatus(key: "route") else { Issue.record("route"); return }
    #expect(UWSGIKeyStatus(key: "no-such-key") == .unknown)
}

/// Notes live in their own section, and only there; every one is one line.
@Test func notesAreDeclaredInTheUWSGISection() {
    for spec in OptionSpec.all {
        #expect((spec.note != nil) == (spec.section == .uwsgi), "\(spec.name)")
        if let note = spec.note {
            #expect(!note.text.isEmpty && !note.text.contains("\n"), "\(spec.name)")
            #expect(spec.environmentVariable == nil, "\(spec.name)")
        }
    }
}

/// Each no-effect option, as a flag or with a value, on the command line and in an ini file:
/// the server still resolves, with one warning that carries the note.
@Test func noEffectOptionsWarnWithTheirNote() {
    for spec in OptionSpec.all {
        guard case let .noEffect(note)? = spec.note, spec.name != "hook-master-start" else { continue }
        for name in spec.longNames {
            let args = spec.takesValue ? ["--\(name)", "4", "app"] : ["--\(name)", "app"]
            var expected = baseline()
            expected.warnings = ["--\(name): has no effect in Apus: \(note)"]
            #expect(config(args) == expected, "\(args)")

            let fs = FakeFileSystem.standard.with(file: "u.ini", "[uwsgi]\nprocesses = 2\n\(name) = true\n")
            let c = config(["--ini", "u.ini", "app"], fs: fs)
            #expect(c?.processes == 2)
            #expect(c?.warnings == ["u.ini:3: \(name): has no effect in Apus: \(note)"], "\(name)")
        }
    }
}

@Test func commonUWSGICommandLines() {
    let c = config(["--master", "--vacuum", "--die-on-term", "--enable-threads", "--plugins", "python3",
                    "--http", ":9000", "--module", "site.wsgi", "--processes", "4", "--thunder-lock"])
    #expect(c?.processes == 4)
    #expect(c?.app == AppSpec(module: "site.wsgi"))
    #expect(c?.warnings.count == 6)
    #expect(c?.warnings.first == "--master: has no effect in Apus: Apus always runs a master process that supervises the workers.")
    #expect(c?.warnings[4].hasPrefix("--plugins: has no effect in Apus: ") == true)
}

@Test func refusedOptionsStopWithTheReason() {
    #expect(failure(["--route", "^/old redirect:/new", "app"])?.hasPrefix("--route: not supported in Apus: uWSGI's internal routing") == true)
    let fs = FakeFileSystem.standard.with(file: "u.ini", "[uwsgi]\nroute-host = ^example.com$ break:403\n")
    #expect(failure(["--ini", "u.ini", "app"], fs: fs)?.hasPrefix("u.ini:2: route-host: not supported in Apus: ") == true)
    #expect(failure(["--smart-attach-daemon", "/tmp/celery.pid celery", "app"])?.hasPrefix("--smart-attach-daemon: not supported in Apus: ") == true)
}

@Test func hookMasterStart() {
    let fs = FakeFileSystem.standard.with(file: "u.ini", "[uwsgi]\nhook-master-start = unix_signal:15  gracefully_kill_them_all\n")
    #expect(config(["--ini", "u.ini", "app"], fs: fs)?.warnings == [
        "u.ini:2: hook-master-start: has no effect in Apus: SIGTERM always stops Apus gracefully.",
    ])
    #expect(failure(["--hook-master-start", "exec:touch /tmp/x", "app"])?.hasPrefix("--hook-master-start: not supported in Apus (only unix_signal:15 gracefully_kill_them_all") == true)
}

@Test func loggers() {
    #expect(config(["--logger", "file:/var/log/a.log", "app"])?.logFile == "/var/log/a.log")
    let rotated = config(["--logger", "file:logfile=/var/log/a.log,maxsize=2m", "app"])
    #expect(rotated?.logFile == "/var/log/a.log")
    #expect(rotated?.logMaxSize == 2 << 20)
    #expect(config(["--log-file", "/l", "--logger", "stdio", "app"])?.logFile == nil)
    #expect(failure(["--logger", "syslog:myapp", "app"]) == #"--logger: the "syslog" logger is not supported in Apus (only file:PATH and stdio): let journald, Docker or syslog's own agent read stderr or a --log-file"#)
    #expect(failure(["--logger", "file:", "app"]) == #"--logger: expected file:PATH, got "file:""#)
    #expect(failure(["--logger", "file:logfile=/l,colour=red", "app"])?.hasPrefix(#"--logger: unknown key "colour""#) == true)
}

@Test func logRotationNeedsAFile() {
    #expect(failure(["--log-maxsize", "1m", "app"]) == "--log-maxsize: needs a log file to rotate (--log-file, --daemonize or --logger file:PATH)")
    #expect(config(["--daemonize", "/var/log/a.log", "--log-maxsize", "1m", "app"])?.logMaxSize == 1 << 20)
}

@Test func daemonizeLogsToItsFileUnlessLogFileNamesOne() {
    #expect(config(["-d", "/var/log/d.log", "app"])?.logFile == "/var/log/d.log")
    let both = config(["--daemonize", "/var/log/d.log", "--log-file", "/var/log/l.log", "app"])
    #expect(both?.logFile == "/var/log/l.log")
    #expect(both?.daemonize == true)
    let fs = FakeFileSystem.standard.with(file: "u.ini", "[uwsgi]\nlogto = /var/log/l.log\ndaemonize2 = /var/log/d.log\n")
    #expect(config(["--ini", "u.ini", "app"], fs: fs)?.logFile == "/var/log/l.log")
}

@Test func conditionalAccessLog() {
    var also = AccessLogAlso()
    #expect(!also.wants(status: 500, bodyBytes: 10, seconds: 9))
    also.status5xx = true
    #expect(also.wants(status: 500, bodyBytes: 10, seconds: 0))
    #expect(also.wants(status: 599, bodyBytes: 10, seconds: 0))
    #expect(!also.wants(status: 404, bodyBytes: 10, seconds: 0))
    #expect(!also.wants(status: 600, bodyBytes: 10, seconds: 0))
    also = AccessLogAlso()
    also.status4xx = true
    #expect(also.wants(status: 404, bodyBytes: 10, seconds: 0) && !also.wants(status: 500, bodyBytes: 10, seconds: 0))
    also = AccessLogAlso()
    also.zeroBody = true
    #expect(also.wants(status: 204, bodyBytes: 0, seconds: 0) && !also.wants(status: 200, bodyBytes: 1, seconds: 0))
    also = AccessLogAlso()
    also.slowMilliseconds = 250
    #expect(also.wants(status: 200, bodyBytes: 1, seconds: 0.25) && !also.wants(status: 200, bodyBytes: 1, seconds: 0.249))
    also = AccessLogAlso()
    also.bigBytes = 100
    #expect(also.wants(status: 200, bodyBytes: 100, seconds: 0) && !also.wants(status: 200, bodyBytes: 99, seconds: 0))
}

@Test func aZergServerRefusesWhatOnlyAMasterDoes() {
    #expect(failure(["--zerg-server", "/run/z.sock", "--attach-daemon", "celery worker"]) == "--zerg-server: --attach-daemon runs next to workers, and a zerg server has none")
    #expect(failure(["--zerg-server", "/run/z.sock", "--log-file", "/l", "--log-maxsize", "1m"]) == "--zerg-server: --log-maxsize is not supported here (SIGUSR1 reopens --log-file)")
    #expect(config(["--zerg-server", "/run/z.sock", "--daemonize", "/l"])?.daemonize == true)
}
