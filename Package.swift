// swift-tools-version:6.0
import PackageDescription

// Layering (see docs/architecture.md):
//   apus (main) -> ApusMaster, ApusWorker, ApusConfig
//   ApusMaster  -> ApusConfig, CApusSys            (never ApusPython: the master runs no Python)
//   ApusWorker  -> ApusProtocols, ApusPython, ApusConfig, CApusSys
//   ApusPython  -> ApusProtocols, CApusSys          (CPython loaded at run time with dlopen)
//   ApusProtocols, ApusConfig: pure Swift, no syscalls
let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "apus",
    platforms: [.macOS(.v13)],
    products: [.executable(name: "apus", targets: ["apus"])],
    targets: [
        .target(name: "CApusSys"),
        .target(name: "ApusConfig", dependencies: ["ApusProtocols"]),
        .target(name: "ApusObserve"),
        .target(name: "ApusIPC"),
        .target(name: "ApusProtocols", swiftSettings: optimize),
        .target(name: "ApusPython", dependencies: ["ApusProtocols", "ApusObserve", "CApusSys"], swiftSettings: optimize),
        .target(name: "ApusWorker",
                dependencies: ["ApusProtocols", "ApusPython", "ApusConfig", "ApusObserve", "ApusIPC", "CApusSys"],
                swiftSettings: optimize),
        .target(name: "ApusMaster", dependencies: ["ApusConfig", "ApusObserve", "ApusIPC", "CApusSys"]),
        // The Swift runtime is linked in: one self-contained binary to copy into an image,
        // and each worker maps only the runtime code it uses (about 1.5 MiB less RSS).
        .executableTarget(name: "apus", dependencies: ["ApusMaster", "ApusWorker", "ApusConfig", "ApusObserve"],
                          linkerSettings: [.unsafeFlags(["-static-stdlib"])]),
        .testTarget(name: "ApusProtocolsTests", dependencies: ["ApusProtocols"],
                    resources: [.copy("Corpus")]),
        .testTarget(name: "ApusConfigTests", dependencies: ["ApusConfig"]),
        .testTarget(name: "ApusIPCTests", dependencies: ["ApusIPC"]),
        .testTarget(name: "ApusMasterTests", dependencies: ["ApusMaster"]),
    ]
)
