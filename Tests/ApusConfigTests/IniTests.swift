import Testing
@testable import ApusConfig

// Ini files as uWSGI reads them (Ini.swift), as values over the fake file system.

private func iniConfig(_ files: [String: String], _ arguments: [String], env: [String: String] = [:],
                       sourceLocation: SourceLocation = #_sourceLocation) -> Configuration? {
    var fs = FakeFileSystem.standard
    fs.directories.formUnion(["/srv/mysite", "/srv/mysite/static"])
    for (path, text) in files { fs.files[path] = text }
    return config(arguments, env: env, fs: fs, sourceLocation: sourceLocation)
}

private func iniFailure(_ files: [String: String], _ arguments: [String], env: [String: String] = [:]) -> String? {
    var fs = FakeFileSystem.standard
    for (path, text) in files { fs.files[path] = text }
    return failure(arguments, env: env, fs: fs)
}

@Test func magicVariablesOfTheFile() {
    let ini = """
        [uwsgi]
        chdir = %dmysite
        pidfile = /run/%n.pid
        log-file = /var/log/%c/%s-%e-%x-%o.log
        touch-reload = %p
        master-fifo = /run/%0-%1-%2-%3.fifo
        processes = %k
        env = HOST=%h
        env = CWD=%v
        env = PERCENT=100%%
        env = LITERAL=50% off
        """
    let c = iniConfig(["/srv/site.ini": ini], ["--ini", "/srv/site.ini", "app"])
    #expect(c?.chdir == "/srv/mysite")
    #expect(c?.pidfile == "/run/site.pid")
    #expect(c?.logFile == "/var/log/srv/site.ini-ini--/srv/site.ini.log")
    #expect(c?.touchReload == "/srv/site.ini")
    #expect(c?.masterFIFO == "/run/srv---.fifo")
    #expect(c?.processes == 4)
    #expect(c?.env == ["HOST": "web1", "CWD": "/srv", "PERCENT": "100%", "LITERAL": "50% off"])
    // A relative path is made absolute from the working directory (testHost: /srv).
    #expect(iniConfig(["mysite/app.ini": "[uwsgi]\ntouch-reload = %p\n"], ["--ini", "mysite/app.ini", "app"])?.touchReload
        == "/srv/mysite/app.ini")
    #expect(iniFailure(["mysite/app.ini": "[uwsgi]\nchdir = %d\n"], ["--ini", "mysite/app.ini", "app"])
        == #"mysite/app.ini:2: chdir: not a directory: "/srv/mysite/""#)
    #expect(iniFailure(["a.ini": "[uwsgi]\npidfile = %z\n"], ["--ini", "a.ini", "app"])?
        .hasPrefix("a.ini:2: unknown magic variable %z") == true)
    // Comments are not expanded.
    #expect(iniFailure(["a.ini": "[uwsgi]\n# %z is fine here\n"], ["--ini", "a.ini", "app"]) == nil)
}

@Test func upperCaseMagicIsTheFirstFile() {
    let files = [
        "/srv/main.ini": "[uwsgi]\nini = /etc/apus/extra.ini\n",
        "/etc/apus/extra.ini": "[uwsgi]\npidfile = %Dx-%N.pid\nlog-file = %dx-%n.log\n",
    ]
    let c = iniConfig(files, ["--ini", "/srv/main.ini", "app"])
    #expect(c?.pidfile == "/srv/x-main.pid")
    #expect(c?.logFile == "/etc/apus/x-extra.log")
}

@Test func referencesToEarlierAndLaterKeys() {
    let ini = """
        [uwsgi]
        project = mysite
        base = /srv/%(project)
        chdir = %(base)
        module = %(project).wsgi:application
        http = 127.0.0.1:%(port)
        port = 9000
        threads = %(workers)
        workers = 3
        """
    let c = iniConfig(["/srv/site.ini": ini], ["--ini", "/srv/site.ini"])
    #expect(c?.chdir == "/srv/mysite")
    #expect(c?.app == AppSpec(module: "mysite.wsgi", callable: "application"))
    #expect(c?.binds == [tcp("127.0.0.1", 9000)])
    #expect(c?.threads == 3)
    #expect(c?.processes == 3)
}

@Test func aReferenceTakesTheFirstValueOfItsKey() {
    // uWSGI looks a reference up as the first occurrence of the key.
    let c = iniConfig(["a.ini": "[uwsgi]\nname = one\nname = two\npidfile = /run/%(name).pid\n"], ["--ini", "a.ini", "app"])
    #expect(c?.pidfile == "/run/one.pid")
}

@Test func placeholdersAndTypos() {
    // A key that is no option is fine when something refers to it...
    #expect(iniFailure(["a.ini": "[uwsgi]\nproject = mysite\nmodule = %(project).wsgi\n"], ["--ini", "a.ini"]) == nil)
    // ... and an unknown key when nothing does.
    #expect(iniFailure(["a.ini": "[uwsgi]\nproject = mysite\nmodule = mysite.wsgi\n"], ["--ini", "a.ini"])
        == #"a.ini:2: unknown key "project""#)
    #expect(iniFailure(["a.ini": "[uwsgi]\nproceses = 2\n"], ["--ini", "a.ini", "app"])
        == #"a.ini:2: unknown key "proceses" (did you mean processes?)"#)
    // set-placeholder/set-ph declare one without a reference; set sets an option or a placeholder.
    let ph = "[uwsgi]\nset-placeholder = unused=1\nset-ph = name=site\nset = threads=2\npidfile = /run/%(name).pid\n"
    let c = iniConfig(["a.ini": ph], ["--ini", "a.ini", "app"])
    #expect(c?.pidfile == "/run/site.pid")
    #expect(c?.threads == 2)
    #expect(iniFailure(["a.ini": "[uwsgi]\nset = other=x\n"], ["--ini", "a.ini", "app"]) == nil)
    #expect(iniFailure(["a.ini": "[uwsgi]\nset-ph = threads=2\n"], ["--ini", "a.ini", "app"])
        == #"a.ini:2: set-ph: "threads" is an option, not a placeholder (use set or a plain threads = ...)"#)
    #expect(iniFailure(["a.ini": "[uwsgi]\nset-ph = threads\n"], ["--ini", "a.ini", "app"])
        == #"a.ini:2: set-ph: expected NAME=VALUE, got "threads""#)
}

@Test func referenceErrors() {
    #expect(iniFailure(["a.ini": "[uwsgi]\nmodule = %(project).wsgi\n"], ["--ini", "a.ini"])
        == "a.ini:2: %(project) refers to no key of the ini files")
    #expect(iniFailure(["a.ini": "[uwsgi]\na = %(b)\nb = %(a)\npidfile = %(a)\n"], ["--ini", "a.ini", "app"])
        == "a.ini:2: %(b) refers to itself: b -> a -> b")
    #expect(iniFailure(["a.ini": "[uwsgi]\nn = 1\nprocesses = %(n + 1)\n"], ["--ini", "a.ini", "app"])
        == "a.ini:3: %(n + 1): uWSGI's arithmetic in references is not supported")
}

@Test func expansionIsBounded() {
    // Each key doubles the one before: 2^30 bytes if nothing stopped it.
    var bomb = "[uwsgi]\nk0 = xxxxxxxxxxxxxxxx\n"
    for n in 1...30 { bomb += "k\(n) = %(k\(n - 1))%(k\(n - 1))\n" }
    bomb += "pidfile = %(k30)\n"
    #expect(iniFailure(["a.ini": bomb], ["--ini", "a.ini", "app"])?
        .hasSuffix("the value grows beyond 1048576 bytes once its references are expanded") == true)
    // Later keys first, so that nothing is expanded yet when pidfile is.
    var deep = "[uwsgi]\npidfile = %(k100)\n"
    for n in (1...100).reversed() { deep += "k\(n) = %(k\(n - 1))\n" }
    deep += "k0 = x\n"
    #expect(iniFailure(["a.ini": deep], ["--ini", "a.ini", "app"])?.hasSuffix("references nest more than 64 deep") == true)
    var files: [String: String] = [:]
    for n in 0..<100 { files["/srv/i\(n).ini"] = "[uwsgi]\nini = /srv/i\(n + 1).ini\n" }
    files["/srv/i100.ini"] = "[uwsgi]\n"
    #expect(iniFailure(files, ["--ini", "/srv/i0.ini", "app"]) == "/srv/i63.ini:2: ini: ini files include each other more than 64 deep")
}

@Test func environmentReferences() {
    let ini = """
        [uwsgi]
        chdir = $(APP_HOME)
        env = A=$(UNSET:-fallback)
        env = B=$(EMPTY:-fallback)
        env = C=$(EMPTY-fallback)
        env = D=$(UNSET-fallback)
        pidfile = /run/$(NAME).pid
        """
    let env = ["APP_HOME": "/srv", "EMPTY": "", "NAME": "site"]
    let c = iniConfig(["a.ini": ini], ["--ini", "a.ini", "app"], env: env)
    #expect(c?.chdir == "/srv")
    #expect(c?.env == ["A": "fallback", "B": "fallback", "C": "", "D": "fallback"])
    #expect(c?.pidfile == "/run/site.pid")
    #expect(iniFailure(["a.ini": "[uwsgi]\npidfile = $(NOPE)\n"], ["--ini", "a.ini", "app"])
        == "a.ini:2: $(NOPE): the environment variable is not set (write $(NOPE:-DEFAULT) for a default)")
    // Expanded before references: a placeholder can hold an environment variable.
    let both = iniConfig(["a.ini": "[uwsgi]\nroot = $(APP_HOME)\nchdir = %(root)\n"], ["--ini", "a.ini", "app"], env: env)
    #expect(both?.chdir == "/srv")
}

@Test func includesAndSections() {
    let files = [
        "/etc/base.ini": "[uwsgi]\nprocesses = 2\nthreads = 2\n[prod]\nprocesses = 8\n",
        "/srv/site.ini": """
            [uwsgi]
            ini = /etc/base.ini
            threads = 4
            ini = :common
            [staging]
            ini = /etc/base.ini:prod
            ini = :common
            processes = 3
            [common]
            module = site.wsgi
            """,
    ]
    let c = iniConfig(files, ["--ini", "/srv/site.ini"])
    #expect(c?.processes == 2)
    #expect(c?.threads == 4)
    #expect(c?.app.module == "site.wsgi")
    let staging = iniConfig(files, ["--ini", "/srv/site.ini:staging"])
    #expect(staging?.processes == 3)
    #expect(staging?.threads == 1)
    let prod = iniConfig(files, ["--ini", "/etc/base.ini:prod", "app"])
    #expect(prod?.processes == 8)
    #expect(prod?.configFiles == ["/etc/base.ini:prod"])
    // APUS_INI takes FILE:SECTION too.
    #expect(iniConfig(files, [], env: ["APUS_INI": "/srv/site.ini:staging"])?.processes == 3)
    #expect(iniFailure(files, ["--ini", "/srv/site.ini:nope"]) == "--ini: /srv/site.ini has no section [nope]")
    #expect(iniFailure(["/srv/a.ini": "[uwsgi]\nini = :nope\n"], ["--ini", "/srv/a.ini", "app"])
        == "/srv/a.ini:2: ini: /srv/a.ini has no section [nope]")
    #expect(iniFailure(files, ["--ini", "/etc/missing.ini", "app"]) == #"--ini: cannot read ini file "/etc/missing.ini""#)
}

@Test func includeCycles() {
    let files = [
        "/srv/a.ini": "[uwsgi]\nini = /srv/b.ini\n",
        "/srv/b.ini": "[uwsgi]\nprocesses = 2\nini = /srv/a.ini\n",
    ]
    #expect(iniFailure(files, ["--ini", "/srv/a.ini", "app"])
        == #"/srv/b.ini:3: ini: ini file "/srv/a.ini" includes itself: /srv/a.ini -> /srv/b.ini -> /srv/a.ini"#)
    #expect(iniFailure(["/srv/c.ini": "[uwsgi]\nini = :x\n[x]\nini = :uwsgi\n"], ["--ini", "/srv/c.ini", "app"])
        == #"/srv/c.ini:2: ini: ini file ":x" includes itself: /srv/c.ini -> /srv/c.ini:x -> /srv/c.ini:uwsgi -> /srv/c.ini:x"#)
    // The same file twice, one after the other, is no cycle.
    let twice = ["/srv/d.ini": "[uwsgi]\nini = /srv/e.ini\nini = /srv/e.ini\n", "/srv/e.ini": "[uwsgi]\npythonpath = /x\n"]
    #expect(iniConfig(twice, ["--ini", "/srv/d.ini", "app"])?.pythonPath == ["/x", "/x"])
}

@Test func ifBlocks() {
    let ini = """
        [uwsgi]
        if-env = DEBUG
        processes = 1
        env = DEBUG_IS=%(_)
        else =
        processes = 4
        endif =
        if-not-env = SECRET
        threads = 2
        endif
        ifenv = MODE=prod
        harakiri = 30
        end-if
        if-exists = /srv/site.py
        wsgi-file = %(_)
        endif
        if-not-dir = /nope
        pidfile = /run/a.pid
        endif
        if-file = /srv
        log-file = /wrong
        endif
        if-dir = /srv
        chdir = %(_)
        endif
        if-opt = pidfile=/run/a.pid
        master-fifo = /run/a.fifo
        endif
        if-not-opt = pidfile
        touch-reload = /wrong
        endif
        """
    let dev = iniConfig(["a.ini": ini], ["--ini", "a.ini"], env: ["DEBUG": "yes"])
    #expect(dev?.processes == 1)
    #expect(dev?.env == ["DEBUG_IS": "yes"])
    #expect(dev?.threads == 2)
    #expect(dev?.harakiri == 0)
    #expect(dev?.app.wsgiFile == "/srv/site.py")
    #expect(dev?.pidfile == "/run/a.pid")
    #expect(dev?.logFile == nil)
    #expect(dev?.chdir == "/srv")
    #expect(dev?.masterFIFO == "/run/a.fifo")
    #expect(dev?.touchReload == nil)
    let prod = iniConfig(["a.ini": ini], ["--ini", "a.ini"], env: ["MODE": "prod", "SECRET": ""])
    #expect(prod?.processes == 4)
    #expect(prod?.env == [:])
    #expect(prod?.threads == 1)
    #expect(prod?.harakiri == 30)
    #expect(iniFailure(["a.ini": "[uwsgi]\nif-env = A\nif-env = B\nendif\n"], ["--ini", "a.ini", "app"])
        == "a.ini:3: if-env inside the if-env block opened at a.ini:2: if blocks do not nest (close it with endif first)")
    #expect(iniFailure(["a.ini": "[uwsgi]\nelse\n"], ["--ini", "a.ini", "app"]) == "a.ini:2: else without an if block")
    // A block open at the end of a file ends there.
    let open = ["a.ini": "[uwsgi]\nif-env = NOPE\nthreads = 9\n", "b.ini": "[uwsgi]\nprocesses = 2\n"]
    #expect(iniConfig(open, ["--ini", "a.ini", "--ini", "b.ini", "app"])?.processes == 2)
    #expect(iniConfig(open, ["--ini", "a.ini", "--ini", "b.ini", "app"])?.threads == 1)
    #expect(iniFailure(["a.ini": "[uwsgi]\nif-env =\n"], ["--ini", "a.ini", "app"]) == "a.ini:2: if-env: missing its argument")
}

@Test func flagsAreSetOnPresenceInIniFiles() {
    // uWSGI: a flag is on unless its value is false, off, no or 0.
    for on in ["true", "1", "yes", "on", "", "anything"] {
        #expect(iniConfig(["a.ini": "[uwsgi]\npreload = \(on)\n"], ["--ini", "a.ini", "app"])?.preload == true, "\(on)")
    }
    #expect(iniConfig(["a.ini": "[uwsgi]\npreload\n"], ["--ini", "a.ini", "app"])?.preload == true)
    for off in ["false", "FALSE", "0", "no", "Off"] {
        #expect(iniConfig(["a.ini": "[uwsgi]\npreload = \(off)\n"], ["--ini", "a.ini", "app"], env: [:])?.preload == false, "\(off)")
    }
    #expect(iniConfig(["a.ini": "[uwsgi]\nlazy-apps\n"], ["--ini", "a.ini", "--preload", "app"])?.preload == true)
    #expect(iniConfig(["a.ini": "[uwsgi]\npreload\nlazy-apps\n"], ["--ini", "a.ini", "app"])?.preload == false)
    // Elsewhere the spellings stay strict.
    #expect(failure(["--preload=anything", "app"]) == #"--preload: expected true or false (or 1/0, yes/no, on/off), got "anything""#)
}

@Test func repeatedKeysInOrder() {
    let c = iniConfig(["a.ini": "[uwsgi]\nprocesses = 2\nhttp = :8001\nprocesses = 5\nhttp = :8002\n"], ["--ini", "a.ini", "app"])
    #expect(c?.processes == 5)
    #expect(c?.binds == [tcp("0.0.0.0", 8001), tcp("0.0.0.0", 8002)])
}

@Test func anIniFileAsTheArgument() {
    let files = ["/srv/site.ini": "[uwsgi]\nmodule = site.wsgi\nprocesses = 2\n[big]\nmodule = site.wsgi\nprocesses = 9\n"]
    #expect(iniConfig(files, ["/srv/site.ini"])?.processes == 2)
    #expect(iniConfig(files, ["/srv/site.ini:big"])?.processes == 9)
    #expect(iniConfig(files, ["/srv/site.ini", "-w", "3"])?.processes == 3)
    #expect(iniConfig(files, ["/srv/site.ini"])?.configFiles == ["/srv/site.ini"])
    // In command-line order with --ini.
    let two = ["/srv/a.ini": "[uwsgi]\nprocesses = 2\n", "/srv/b.ini": "[uwsgi]\nprocesses = 3\n"]
    #expect(iniConfig(two, ["--ini", "/srv/a.ini", "/srv/b.ini", "--module", "app"])?.processes == 3)
    #expect(iniConfig(two, ["/srv/a.ini", "--ini", "/srv/b.ini", "--module", "app"])?.processes == 3)
    #expect(iniConfig(two, ["/srv/b.ini", "--ini", "/srv/a.ini", "--module", "app"])?.processes == 2)
    // A name ending in .ini that is no file is still a module.
    #expect(iniConfig([:], ["app.ini"])?.app.module == "app.ini")
}

@Test func printConfigShowsOrigins() throws {
    let files = ["/srv/site.ini": "[uwsgi]\nproject = site\nmodule = %(project).wsgi\nworkers = 2\nhttp = :8001\nmaster\nenv = A=1\nenv = B=1\nlazy-apps\n"]
    var fs = FakeFileSystem.standard
    for (path, text) in files { fs.files[path] = text }
    guard case let .printConfig(text) = try resolve(["--ini", "/srv/site.ini", "--threads", "3", "--print-config"],
                                                    env: ["APUS_ENV": "B=2", "APUS_KEEP_ALIVE": "7"], fs: fs) else {
        Issue.record("expected .printConfig")
        return
    }
    let rows = text.split(separator: "\n").map { line -> (String, String) in
        let parts = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
        return (trimmed(parts.first ?? ""), trimmed(parts.count > 1 ? parts[1] : ""))
    }
    func origin(_ row: String) -> String? { rows.first { $0.0 == row }?.1 }
    #expect(origin("module = site.wsgi") == "/srv/site.ini:3: module")
    #expect(origin("processes = 2") == "/srv/site.ini:4: workers")
    #expect(origin("threads = 3") == "--threads")
    #expect(origin("keep-alive = 7") == "APUS_KEEP_ALIVE")
    #expect(origin("http = :8001") == "/srv/site.ini:5: http")
    #expect(origin("env = A=1") == "/srv/site.ini:7: env")
    #expect(origin("env = B=2") == "APUS_ENV")
    #expect(origin("env = B=1") == nil)
    #expect(origin("preload = off") == "/srv/site.ini:9: lazy-apps")
    #expect(origin("shutdown-timeout = 30") == "default")
    #expect(origin("limit-request-headers-size = 64k") == "default")
    #expect(origin("pidfile") == "not set")
    #expect(origin("callable") == "not set (default: application, then app)")
    #expect(origin("ini = /srv/site.ini") == "--ini")
    #expect(rows.contains { $0.1.hasPrefix("warning: /srv/site.ini:6: master: has no effect in Apus: ") })
    // Every option of the table has its row, in the table's order.
    let names = OptionIndex().specs.filter { $0.action == nil || $0.action == .ini }.map(\.name)
    let shown = rows.filter { !$0.0.isEmpty }.map { String($0.0.split(separator: " ").first!) }
    var unique: [String] = []
    for name in shown where unique.last != name { unique.append(name) }
    #expect(unique == names)

    // The derived binds say where they came from.
    guard case let .printConfig(port) = try resolve(["app", "--print-config"], env: ["PORT": "5000"]),
          case let .printConfig(plain) = try resolve(["app", "--print-config"]) else {
        Issue.record("expected .printConfig")
        return
    }
    #expect(port.split(separator: "\n").contains { $0.hasPrefix("http = 0.0.0.0:5000") && $0.hasSuffix("# PORT") })
    #expect(plain.split(separator: "\n").contains { $0.hasPrefix("http = 127.0.0.1:8000") && $0.hasSuffix("# default") })
    #expect(plain.split(separator: "\n").contains { $0.hasPrefix("module = app") && $0.hasSuffix("# application argument") })
    // A bad option is an error as at start.
    #expect(failure(["--print-config", "-w", "0", "app"]) == "-w: must be between 1 and 1024, got 0")
    #expect(failure(["--print-config"]) == "no application given: apus MODULE[:CALLABLE] or --wsgi-file FILE")
}
