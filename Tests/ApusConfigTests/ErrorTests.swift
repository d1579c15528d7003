import Testing
@testable import ApusConfig

/// Arguments (plus "app") and the exact one-line error they give.
struct BadValue: Sendable, CustomTestStringConvertible {
    let arguments: [String]
    let message: String
    init(_ arguments: [String], _ message: String) {
        self.arguments = arguments
        self.message = message
    }
    var testDescription: String { arguments.joined(separator: " ") }
}

let badValues: [BadValue] = [
    BadValue(["--processes", "abc"], #"--processes: expected a positive integer, got "abc""#),
    BadValue(["--processes", "0"], "--processes: must be between 1 and 1024, got 0"),
    BadValue(["-w", "2000"], "-w: must be between 1 and 1024, got 2000"),
    BadValue(["-p-1"], #"-p: expected a positive integer, got "-1""#),
    BadValue(["--workers=4.5"], #"--workers: expected a positive integer, got "4.5""#),
    BadValue(["--threads", ""], #"--threads: expected a positive integer, got """#),
    BadValue(["--chmod-socket", "999"], #"--chmod-socket: expected an octal mode such as 660, got "999""#),
    BadValue(["--chown-socket", ":staff"], #"--chown-socket: expected USER or USER:GROUP, got ":staff""#),
    BadValue(["--warmup", "health"], #"--warmup: expected a path such as /health, got "health""#),
    BadValue(["--reload-timeout", "0"], #"--reload-timeout: must be more than 0 seconds, got "0""#),
    BadValue(["--forwarded-allow-ips", "10.0.0.1/8"], #"--forwarded-allow-ips: item "10.0.0.1/8": host bits set (use 10.0.0.0/8)"#),
    BadValue(["--forwarded-allow-ips", "10.0.0.300"], #"--forwarded-allow-ips: item "10.0.0.300": not a valid IP address, network, "*" or "unix""#),
    BadValue(["--threads", "99999999999999999999999"], #"--threads: expected a positive integer, got "99999999999999999999999""#),
    BadValue(["--backlog", "70000"], "--backlog: must be between 1 and 65535, got 70000"),
    BadValue(["--listen", "x"], #"--listen: expected a positive integer, got "x""#),
    BadValue(["--limit-request-fields", "0"], "--limit-request-fields: must be between 1 and 10000, got 0"),
    BadValue(["--shutdown-timeout", "abc"], #"--shutdown-timeout: expected a number of seconds such as 30 or 0.5, got "abc""#),
    BadValue(["--graceful-timeout", "-1"], #"--graceful-timeout: expected a number of seconds such as 30 or 0.5, got "-1""#),
    BadValue(["--shutdown-timeout", "5s"], #"--shutdown-timeout: expected a number of seconds such as 30 or 0.5, got "5s""#),
    BadValue(["--shutdown-timeout", "inf"], #"--shutdown-timeout: expected a number of seconds such as 30 or 0.5, got "inf""#),
    BadValue(["--shutdown-timeout", "."], #"--shutdown-timeout: expected a number of seconds such as 30 or 0.5, got ".""#),
    BadValue(["--shutdown-timeout", "90000"], #"--shutdown-timeout: must be at most 86400 seconds, got "90000""#),
    BadValue(["--cheaper", "2"], "--cheaper 2: must be less than --processes (1), the most workers it may add up to"),
    BadValue(["--umask", "0o999"], #"--umask: expected an octal mask such as 022, got "0o999""#),
    BadValue(["--uid", "a:b"], #"--uid: expected a user name or number, got "a:b""#),
    BadValue(["--timeout", "x"], #"--timeout: expected a number of seconds such as 30 or 0.5, got "x""#),
    BadValue(["--header-timeout", "0"], #"--header-timeout: must be more than 0 seconds, got "0""#),
    BadValue(["--keep-alive", "1e3"], #"--keep-alive: expected a number of seconds such as 30 or 0.5, got "1e3""#),
    BadValue(["--limit-request-body", "12x"], #"--limit-request-body: expected a size in bytes such as 65536, 64k or 1m, got "12x""#),
    BadValue(["--limit-post", "1t"], #"--limit-post: expected a size in bytes such as 65536, 64k or 1m, got "1t""#),
    BadValue(["--limit-request-body", "k"], #"--limit-request-body: expected a size in bytes such as 65536, 64k or 1m, got "k""#),
    BadValue(["--limit-request-body", "99999999999999g"], #"--limit-request-body: too large: "99999999999999g""#),
    BadValue(["--limit-request-line", "8"], "--limit-request-line: must be between 16 and 1048576 bytes, got 8"),
    BadValue(["--buffer-size", "32m"], "--buffer-size: must be between 256 and 16777216 bytes, got 33554432"),
    BadValue(["--post-buffering", "2g"], "--post-buffering: must be between 0 and 1073741824 bytes, got 2147483648"),
    BadValue(["--chdir", "/nope"], #"--chdir: not a directory: "/nope""#),
    BadValue(["--chdir", "app.py"], #"--chdir: not a directory: "app.py""#),
    BadValue(["--venv", "/nope"], #"--venv: not a directory: "/nope""#),
    BadValue(["-H", "/nope"], #"-H: not a directory: "/nope""#),
    BadValue(["--python", "/usr/bin/python9"], #"--python: no such file "/usr/bin/python9""#),
    BadValue(["--python", "/srv"], #"--python: no such file "/srv""#),
    BadValue(["--pythonpath", ""], #"--pythonpath: expected a directory, got """#),
    BadValue(["--env", "NOVALUE"], #"--env: expected KEY=VALUE, got "NOVALUE""#),
    BadValue(["--env", "=x"], #"--env: empty variable name in "=x""#),
    BadValue(["--callable", "make-app"], #"--callable: expected a Python name such as application, got "make-app""#),
    BadValue(["--preload=maybe"], #"--preload: expected true or false (or 1/0, yes/no, on/off), got "maybe""#),
    BadValue(["--no-access-log="], #"--no-access-log: expected true or false (or 1/0, yes/no, on/off), got """#),
    BadValue(["--mount", "api"], #"--mount: expected a URL prefix starting with "/", got "api""#),
    BadValue(["--mount", "/api/"], #"--mount: the prefix must not end with "/", got "/api/""#),
    BadValue(["--mount", "/a b"], ##"--mount: the prefix must not contain spaces, "?" or "#", got "/a b""##),
    BadValue(["--mount", "/api="], #"--mount: missing application after "=" in "/api=""#),
    BadValue(["--mount", "/api=not-a-module"], #"--mount: expected MODULE[:CALLABLE] such as app.wsgi or hello:application, got "not-a-module""#),
    BadValue(["--wsgi-file="], #"--wsgi-file: expected a file name, got """#),
]

@Test(arguments: badValues)
func badValue(_ bad: BadValue) {
    #expect(failure(bad.arguments + ["app"]) == bad.message)
}

@Test func errorsNameTheEnvironmentVariable() {
    #expect(failure(["app"], env: ["APUS_PROCESSES": "abc"]) == #"APUS_PROCESSES: expected a positive integer, got "abc""#)
    #expect(failure(["app"], env: ["APUS_HTTP": ":8000,:0"]) == #"APUS_HTTP: port must be between 1 and 65535, got "0""#)
    #expect(failure(["app"], env: ["APUS_PRELOAD": "sure"]) == #"APUS_PRELOAD: expected true or false (or 1/0, yes/no, on/off), got "sure""#)
    #expect(failure(["app"], env: ["APUS_CHDIR": "/nope"]) == #"APUS_CHDIR: not a directory: "/nope""#)
}

@Test func errorsNameTheIniFileLineAndKey() {
    let fs = FakeFileSystem.standard.with(file: "app.ini", "[uwsgi]\n# workers\nprocesses = 4\nthreads = many\n")
    #expect(failure(["--ini", "app.ini", "app"], fs: fs) == #"app.ini:4: threads: expected a positive integer, got "many""#)
}

@Test func lowerLayersAreValidatedEvenWhenOverridden() {
    #expect(failure(["app", "--processes", "2"], env: ["APUS_PROCESSES": "abc"])
        == #"APUS_PROCESSES: expected a positive integer, got "abc""#)
}

@Test func unknownOptions() {
    #expect(failure(["--frobnicate", "app"]) == "unknown option --frobnicate")
    #expect(failure(["app", "--frobnicate=3"]) == "unknown option --frobnicate")
    #expect(failure(["-x", "app"]) == "unknown option -x")
    #expect(failure(["-hx"]) == "unknown option -hx")
    #expect(failure(["--Processes", "2", "app"]) == "unknown option --Processes (did you mean --processes?)")
    #expect(failure(["--proceses", "2", "app"]) == "unknown option --proceses (did you mean --processes?)")
    #expect(failure(["--thread", "2", "app"]) == "unknown option --thread (did you mean --threads?)")
    #expect(failure(["--processes_count", "2", "app"]) == "unknown option --processes_count")
    // uWSGI keys with no effect are accepted on the command line too, with their note.
    #expect(config(["--master", "app"])?.warnings.count == 1)
    #expect(failure(["--mastr", "app"]) == "unknown option --mastr (did you mean --master?)")
    // Unknown APUS_* variables are not Apus's business (other parts of the server use some).
    #expect(config(["app"], env: ["APUS_FROBNICATE": "1"]) == baseline())
}

@Test func missingValues() {
    #expect(failure(["app", "--threads"]) == "--threads: missing value (expected N)")
    #expect(failure(["app", "-w"]) == "-w: missing value (expected N)")
    #expect(failure(["--threads", "--preload", "app"]) == "--threads: missing value (expected N)")
    #expect(failure(["--http", "-w", "2", "app"]) == "--http: missing value (expected ADDR)")
    #expect(failure(["app", "--ini"]) == "--ini: missing value (expected FILE)")
}

@Test func emptyEnvironmentVariablesAreIgnored() {
    #expect(config(["app"], env: ["APUS_PROCESSES": "", "APUS_HTTP": "", "PORT": ""]) == baseline())
}
