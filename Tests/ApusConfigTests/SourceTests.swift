import Testing
@testable import ApusConfig

@Test func precedence() {
    let fs = FakeFileSystem.standard.with(file: "app.ini", "[apus]\nprocesses = 2\nthreads = 2\n")
    let env = ["APUS_PROCESSES": "3", "APUS_INI": "app.ini"]
    #expect(config(["app", "-w", "4"], env: env, fs: fs)?.processes == 4)
    #expect(config(["app"], env: env, fs: fs)?.processes == 3)
    #expect(config(["app"], env: ["APUS_INI": "app.ini"], fs: fs)?.processes == 2)
    #expect(config(["app"], fs: fs)?.processes == 1)
    #expect(config(["app"], env: env, fs: fs)?.threads == 2)
    // Within the command line the last occurrence wins.
    #expect(config(["app", "-w", "4", "--processes=5"])?.processes == 5)
}

@Test func listsReplaceLowerSourcesAndAppendWithinOne() {
    let fs = FakeFileSystem.standard.with(file: "app.ini", "[uwsgi]\nhttp = :8001\nhttp = :8002\nsocket = /run/app.sock\npythonpath = /a\npythonpath = /b\n")
    let fromIni = config(["--ini", "app.ini", "app"], fs: fs)
    #expect(fromIni?.binds == [tcp("0.0.0.0", 8001), tcp("0.0.0.0", 8002), unix("/run/app.sock", .uwsgi)])
    #expect(fromIni?.pythonPath == ["/a", "/b"])

    let env = ["APUS_HTTP": ":9000, :9001", "APUS_PYTHONPATH": "/c:/d"]
    let fromEnv = config(["--ini", "app.ini", "app"], env: env, fs: fs)
    #expect(fromEnv?.binds == [tcp("0.0.0.0", 9000), tcp("0.0.0.0", 9001), unix("/run/app.sock", .uwsgi)])
    #expect(fromEnv?.pythonPath == ["/c", "/d"])

    let fromCLI = config(["--ini", "app.ini", "app", "-b", ":7000", "--http", ":7001", "--pythonpath", "/e"], env: env, fs: fs)
    #expect(fromCLI?.binds == [tcp("0.0.0.0", 7000), tcp("0.0.0.0", 7001), unix("/run/app.sock", .uwsgi)])
    #expect(fromCLI?.pythonPath == ["/e"])
}

@Test func envMergesByName() {
    let fs = FakeFileSystem.standard.with(file: "app.ini", "[uwsgi]\nenv = A=ini\nenv = B=ini\n")
    let c = config(["--ini", "app.ini", "app", "--env", "C=cli", "--env", "A=cli"], env: ["APUS_ENV": "B=env,D="], fs: fs)
    #expect(c?.env == ["A": "cli", "B": "env", "C": "cli", "D": ""])
}

@Test func iniFiles() {
    let ini = """
        # a uWSGI file
        [uwsgi]
        module = hello:application
        ; comment
        master = true
        http-socket = 127.0.0.1:9000
        processes = 4
        enable_threads = true
        limit_post = 10m
        lazy-apps = true

        [other]
        anything = goes here
        [apus]
        threads = 2
        """
    let fs = FakeFileSystem.standard.with(file: "/etc/apus.ini", ini)
    var expected = Configuration()
    expected.app = AppSpec(module: "hello", callable: "application")
    expected.binds = [tcp("127.0.0.1", 9000)]
    expected.processes = 4
    expected.threads = 2
    expected.limits.maxBodyBytes = 10 << 20
    expected.configFiles = ["/etc/apus.ini"]
    expected.warnings = [
        "/etc/apus.ini:5: master: has no effect in Apus: Apus always runs a master process that supervises the workers.",
        "/etc/apus.ini:8: enable_threads: has no effect in Apus: Threads started by the app always run: a worker releases the GIL whenever it waits.",
    ]
    #expect(config(["--ini", "/etc/apus.ini"], fs: fs) == expected)
    #expect(config([], env: ["APUS_INI": "/etc/apus.ini"], fs: fs) == expected)
}

@Test func iniFilesInOrderAndCRLF() {
    let fs = FakeFileSystem.standard
        .with(file: "base.ini", "[apus]\r\nprocesses = 2\r\nthreads = 3\r\n")
        .with(file: "prod.ini", "[apus]\nprocesses = 8\n")
    let c = config(["--ini", "base.ini", "--ini=prod.ini", "app"], fs: fs)
    #expect(c?.processes == 8)
    #expect(c?.threads == 3)
    #expect(c?.configFiles == ["base.ini", "prod.ini"])
    // APUS_INI holds comma-separated files; --ini replaces them.
    #expect(config(["app"], env: ["APUS_INI": "base.ini,prod.ini"], fs: fs)?.configFiles == ["base.ini", "prod.ini"])
    #expect(config(["app", "--ini", "base.ini"], env: ["APUS_INI": "prod.ini"], fs: fs)?.processes == 2)
}

@Test func iniErrors() {
    func error(_ text: String) -> String? {
        failure(["--ini", "x.ini", "app"], fs: FakeFileSystem.standard.with(file: "x.ini", text))
    }
    #expect(error("[uwsgi]\nfrobnicate = 1\n") == #"x.ini:2: unknown key "frobnicate""#)
    #expect(error("[uwsgi]\npy-autoreload = 1\n") == #"x.ini:2: unknown key "py-autoreload""#)
    #expect(error("[uwsgi]\nworker = 4\n") == #"x.ini:2: unknown key "worker" (did you mean workers?)"#)
    #expect(error("processes = 2\n") == #"x.ini:1: "processes = 2" is outside any section (start the file with [apus] or [uwsgi])"#)
    #expect(error("[uwsgi\n") == #"x.ini:1: malformed section header "[uwsgi""#)
    // A key without "=" has an empty value, as in uWSGI.
    #expect(error("[apus]\n\nprocesses\n") == #"x.ini:3: processes: expected a positive integer, got """#)
    #expect(error("[apus]\nini = other.ini\n") == #"x.ini:2: ini: cannot read ini file "other.ini""#)
    #expect(error("[apus]\nhelp = true\n") == #"x.ini:2: "help" cannot be set in an ini file"#)
    #expect(error("[apus]\ncheck = true\n") == #"x.ini:2: "check" cannot be set in an ini file"#)
    #expect(error("[apus]\nhttp = 8000\n") == #"x.ini:2: http: expected HOST:PORT, :PORT, [IPV6]:PORT or unix:PATH, got "8000" (did you mean ":8000"?)"#)
    // Unknown keys in other sections are not ours to judge.
    #expect(error("[other]\nfrobnicate = 1\n") == nil)
    #expect(failure(["--ini", "missing.ini", "app"]) == #"--ini: cannot read ini file "missing.ini""#)
    #expect(failure(["app"], env: ["APUS_INI": "missing.ini"]) == #"APUS_INI: cannot read ini file "missing.ini""#)
}

@Test func port() {
    #expect(config(["app"], env: ["PORT": "5000"])?.binds == [tcp("0.0.0.0", 5000)])
    #expect(config(["app"])?.binds == [tcp("127.0.0.1", 8000)])
    for bad in ["abc", "0", "65536", "-1", "80x", " 80"] {
        #expect(failure(["app"], env: ["PORT": bad]) == "PORT: expected a port number between 1 and 65535, got \(quoted(bad))")
    }
    // Only used when nothing else says where to listen.
    #expect(config(["app", "--http", ":9000"], env: ["PORT": "5000"])?.binds == [tcp("0.0.0.0", 9000)])
    #expect(config(["app", "-s", ":3031"], env: ["PORT": "5000"])?.binds == [tcp("0.0.0.0", 3031, .uwsgi)])
    #expect(config(["app"], env: ["PORT": "5000", "APUS_HTTP": ":9000"])?.binds == [tcp("0.0.0.0", 9000)])
    #expect(config(["app", "--http", ":9000"], env: ["PORT": "bad"])?.binds == [tcp("0.0.0.0", 9000)])
}
