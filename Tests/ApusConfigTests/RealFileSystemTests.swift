import Foundation
import Testing
@testable import ApusConfig

@Test func realFileSystem() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("apus-config-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let ini = dir.appendingPathComponent("app.ini").path
    try "[uwsgi]\nprocesses = 3\n".write(toFile: ini, atomically: true, encoding: .utf8)
    let link = dir.appendingPathComponent("link").path
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: dir.path)

    let fs = RealFileSystem()
    #expect(fs.isDirectory(dir.path))
    #expect(fs.isDirectory(link))
    #expect(!fs.isFile(dir.path))
    #expect(fs.isFile(ini))
    #expect(!fs.isDirectory(ini))
    #expect(!fs.isFile(dir.appendingPathComponent("missing").path))
    #expect(fs.read(ini) == "[uwsgi]\nprocesses = 3\n")
    #expect(fs.read(dir.path) == nil)

    let command = try resolveCommand(arguments: ["--ini", ini, "--chdir", link, "app"], environment: [:], fileSystem: fs)
    guard case let .run(config) = command else { Issue.record("expected .run"); return }
    #expect(config.processes == 3)
    #expect(config.chdir == link)
}
