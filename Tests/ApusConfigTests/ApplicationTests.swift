import Testing
@testable import ApusConfig

@Test func positionalApplication() {
    #expect(config(["app.wsgi"])?.app == AppSpec(module: "app.wsgi"))
    #expect(config(["hello:application"])?.app == AppSpec(module: "hello", callable: "application"))
    #expect(config(["pkg.web.wsgi:make.app"])?.app == AppSpec(module: "pkg.web.wsgi", callable: "make.app"))
    #expect(config(["--threads", "2", "--", "app"])?.threads == 2)
}

@Test func noApplication() {
    let message = "no application given: apus MODULE[:CALLABLE] or --wsgi-file FILE"
    #expect(failure([]) == message)
    #expect(failure(["--processes", "2"]) == message)
    #expect(failure(["--callable", "app"]) == message)
    #expect(failure(["--mount", "/api"]) == message)
}

@Test func badApplicationNames() {
    for bad in ["my-app", "app:", ":app", "app..wsgi", "1app", "app:make()", "a:b:c", ""] {
        #expect(failure([bad]) == "application argument: expected MODULE[:CALLABLE] such as app.wsgi or hello:application, got \(quoted(bad))")
    }
    #expect(failure(["--module", "my-app"]) == #"--module: expected MODULE[:CALLABLE] such as app.wsgi or hello:application, got "my-app""#)
    #expect(failure(["-", "x"]) != nil)
}

@Test func onlyOnePositional() {
    #expect(failure(["app", "other"]) == #"unexpected argument "other": the application is already given as "app""#)
}

@Test func positionalAndModule() {
    #expect(config(["app", "--module", "app"]) == baseline())
    #expect(config(["--wsgi", "app"]) == baseline())
    #expect(config(["--app=app"]) == baseline())
    #expect(failure(["app", "--module", "other"]) == #"--module: "other" conflicts with "app" given by the application argument"#)
    #expect(failure(["--wsgi=other", "app"]) == #"--wsgi: "other" conflicts with "app" given by the application argument"#)
    // The same option repeated: the last one wins, as for any single-valued option.
    #expect(config(["--module", "x", "--module", "app"]) == baseline())
}

@Test func moduleAndFileInOneSourceConflict() {
    #expect(failure(["app", "--wsgi-file", "app.py"]) == #"--wsgi-file: "app.py" conflicts with "app" given by the application argument"#)
    #expect(failure([], env: ["APUS_MODULE": "app", "APUS_WSGI_FILE": "app.py"])
        == #"APUS_WSGI_FILE: "app.py" conflicts with "app" given by APUS_MODULE"#)
}

@Test func higherSourcesReplaceTheApplication() {
    let fs = FakeFileSystem.standard.with(file: "a.ini", "[uwsgi]\nmodule = fromini:application\n")
    #expect(config(["--ini", "a.ini"], fs: fs)?.app == AppSpec(module: "fromini", callable: "application"))
    #expect(config(["--ini", "a.ini"], env: ["APUS_MODULE": "fromenv"], fs: fs)?.app == AppSpec(module: "fromenv"))
    #expect(config(["--ini", "a.ini", "cli"], env: ["APUS_MODULE": "fromenv"], fs: fs)?.app == AppSpec(module: "cli"))
    #expect(config(["--ini", "a.ini", "--file", "app.py"], fs: fs)?.app == AppSpec(wsgiFile: "app.py"))
}

@Test func wsgiFile() {
    #expect(config(["--wsgi-file", "app.py"])?.app == AppSpec(wsgiFile: "app.py"))
    #expect(config(["--wsgi-file", "app.py", "--callable", "api"])?.app == AppSpec(wsgiFile: "app.py", callable: "api"))
    #expect(failure(["--wsgi-file", "missing.py"]) == #"--wsgi-file: no such file "missing.py""#)
    // Relative to --chdir, like the server that changes directory before loading it.
    let c = config(["--chdir", "/srv", "--file", "site.py"])
    #expect(c?.app == AppSpec(wsgiFile: "site.py"))
    #expect(c?.chdir == "/srv")
    #expect(failure(["--chdir", "/srv", "--file", "app.py"]) == #"--file: no such file "app.py" in "/srv""#)
    #expect(config(["--chdir", "/srv", "--file", "/srv/site.py"])?.app == AppSpec(wsgiFile: "/srv/site.py"))
}

@Test func callable() {
    #expect(config(["app", "--callable", "api"])?.app == AppSpec(module: "app", callable: "api"))
    #expect(config(["app:api", "--callable", "api"])?.app == AppSpec(module: "app", callable: "api"))
    #expect(failure(["app:api", "--callable", "other"]) == #"--callable: "other" conflicts with the callable in "app:api" given by the application argument"#)
    // Across sources the higher one wins.
    #expect(config(["app:api"], env: ["APUS_CALLABLE": "other"])?.app == AppSpec(module: "app", callable: "api"))
    #expect(config(["--callable", "other"], env: ["APUS_MODULE": "app:api"])?.app == AppSpec(module: "app", callable: "other"))
    #expect(config(["app"], env: ["APUS_CALLABLE": "other"])?.app == AppSpec(module: "app", callable: "other"))
}

@Test func mount() {
    #expect(config(["app", "--mount", "/"])?.scriptName == "")
    #expect(config(["app", "--mount", "/api/v1"])?.scriptName == "/api/v1")
    var expected = baseline()
    expected.scriptName = "/api"
    #expect(config(["--mount", "/api=app"]) == expected)
    #expect(config(["app", "--mount", "/api=app"]) == expected)
    expected.app = AppSpec(module: "app", callable: "application")
    #expect(config(["--mount", "/api=app:application"]) == expected)
    expected.app = AppSpec(wsgiFile: "app.py")
    #expect(config(["--mount", "/api=app.py"]) == expected)
    #expect(failure(["--mount", "/api=missing.py"]) == #"--mount: no such file "missing.py""#)
    #expect(failure(["other", "--mount", "/api=app"]) == #"--mount: application "app" conflicts with "other" given by the application argument"#)
    let fs = FakeFileSystem.standard.with(file: "m.ini", "[uwsgi]\nmount = /app=app.py\n")
    #expect(config(["--ini", "m.ini"], fs: fs)?.app == AppSpec(wsgiFile: "app.py"))
}
