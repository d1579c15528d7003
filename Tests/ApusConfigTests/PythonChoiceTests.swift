import Testing
@testable import ApusConfig

/// /srv/venv is a venv (pyvenv.cfg); /opt/tool is not.
private let fs = FakeFileSystem(directories: ["/srv/venv", "/srv/venv/bin", "/opt/tool/bin"],
                                files: ["/srv/venv/pyvenv.cfg": "home = /usr/bin\n", "/srv/venv/bin/apus": "",
                                        "/opt/tool/bin/apus": ""])

private func decide(python: String? = nil, venv: String? = nil, _ executables: [String]) -> PythonChoice {
    PythonChoice.decide(python: python, venv: venv, executables: executables, fileSystem: fs)
}

@Test func theVenvAroundTheBinaryIsUsedWithoutOptions() {
    #expect(decide(["/srv/venv/bin/apus"]) == .venv("/srv/venv", besideBinary: true))
    #expect(decide(["/srv/venv/bin/./apus"]) == .venv("/srv/venv", besideBinary: true))
    #expect(decide(["/srv/venv/lib/../bin/apus"]) == .venv("/srv/venv", besideBinary: true))
    // Any name: the rule is the directory, as for CPython's own bin/python.
    #expect(decide(["/srv/venv/bin/apus-1.2"]) == .venv("/srv/venv", besideBinary: true))
}

@Test func explicitOptionsWinOverTheVenvAroundTheBinary() {
    #expect(decide(venv: "/other", ["/srv/venv/bin/apus"]) == .venv("/other", besideBinary: false))
    #expect(decide(python: "/usr/bin/python3", ["/srv/venv/bin/apus"]) == .interpreter("/usr/bin/python3"))
    #expect(decide(python: "/usr/bin/python3", venv: "/other", ["/srv/venv/bin/apus"]) == .interpreter("/usr/bin/python3"))
}

@Test func withoutAVenvAroundTheBinaryPythonComesFromPath() {
    #expect(decide(["/opt/tool/bin/apus"]) == .searchPath)
    #expect(decide(["/srv/venv/apus"]) == .searchPath)            // not in bin/
    #expect(decide(["/srv/venv/bin/sub/apus"]) == .searchPath)
    #expect(decide(["apus"]) == .searchPath)                       // never relative
    #expect(decide(["bin/apus"]) == .searchPath)
    #expect(decide([]) == .searchPath)
}

@Test func theStartedPathComesBeforeTheResolvedOne() {
    // A symlink /usr/local/bin/apus -> /srv/venv/bin/apus: found through /proc/self/exe.
    #expect(decide(["/usr/local/bin/apus", "/srv/venv/bin/apus"]) == .venv("/srv/venv", besideBinary: true))
    // A symlink /srv/venv/bin/apus -> /opt/tool/bin/apus: found through the path as started.
    #expect(decide(["/srv/venv/bin/apus", "/opt/tool/bin/apus"]) == .venv("/srv/venv", besideBinary: true))
}

@Test func venvAroundIsLexical() {
    #expect(PythonChoice.venvAround("/a/b/bin/apus") == "/a/b")
    #expect(PythonChoice.venvAround("/bin/apus") == "/")
    #expect(PythonChoice.venvAround("/a/bin/../bin/apus") == "/a")
    #expect(PythonChoice.venvAround("/a/b/apus") == nil)
    #expect(PythonChoice.venvAround("a/bin/apus") == nil)
}
