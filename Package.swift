// swift-tools-version:6.0
import PackageDescription

// Layering (see docs/architecture.md):
//   apus (main) -> ApusMaster, ApusWorker, ApusRouter, ApusTop, ApusConfig, ApusIPC, ApusObserve
//   ApusMaster  -> ApusConfig, ApusIPC, ApusSys    (never ApusPython: the master runs no Python)
//   ApusRouter  -> ApusProtocols, ApusConfig, ApusMaster, ApusObserve, ApusSys, CApusSys
//                  (`apus router`: no Python either; ApusMaster for the listening sockets)
//   ApusWorker  -> ApusProtocols, ApusPython, ApusConfig, ApusIPC, ApusSys
//   ApusIPC     -> ApusConfig, ApusSys, CApusSys   (what master and workers share)
//   ApusSys     -> CApusSys                        (the syscall policy, the clock, epoll)
//   ApusPython  -> ApusProtocols, ApusObserve, CApusSys  (CPython loaded at run time with dlopen)
//   ApusObserve -> ApusSys                         (log lines)
//   ApusTop     -> ApusSys, CApusSys               (`apus top`: reads a stats server, draws it)
//   ApusProtocols: pure Swift, no syscalls. ApusConfig: pure but for RealFileSystem, the one
//   type that reads ini files and checks paths (tests give it a FileSystem of their own)
// The request path is built with -O, not -Ounchecked: a failed bounds or overflow check on
// bytes from a socket must stop the worker, not run on as undefined behaviour. The measured
// difference is in "Build flags" in docs/architecture.md.
let optimize: [SwiftSetting] = [.unsafeFlags(["-O", "-wmo"], .when(configuration: .release))]

// The Swift runtime is linked in (-static-stdlib): one self-contained binary to copy into an
// image, and each worker maps only the runtime code it uses. -z now binds the binary's imports
// in the master before it forks (and makes them read-only); --no-export-dynamic keeps its
// dynamic symbol table to what it imports. The default linker, no linker script: see "Memory
// of a worker" in docs/architecture.md for what these save and why the code is not laid out.
let link: [LinkerSetting] = [
    .unsafeFlags(["-static-stdlib"]),
    .unsafeFlags(["-Xlinker", "-z", "-Xlinker", "now", "-Xlinker", "--no-export-dynamic"],
                 .when(configuration: .release)),
]

let package = Package(
    name: "apus",
    platforms: [.macOS(.v13)],
    products: [.executable(name: "apus", targets: ["apus"])],
    targets: [
        .target(name: "CApusSys"),
        .target(name: "ApusConfig", dependencies: ["ApusProtocols"]),
        .target(name: "ApusObserve", dependencies: ["ApusSys", "CApusSys"]),
        .target(name: "ApusSys", dependencies: ["CApusSys"], swiftSettings: optimize),
        .target(name: "ApusIPC", dependencies: ["ApusConfig", "ApusSys", "CApusSys"]),
        .target(name: "ApusProtocols", swiftSettings: optimize),
        .target(name: "ApusPython", dependencies: ["ApusProtocols", "ApusObserve", "CApusSys"], swiftSettings: optimize),
        .target(name: "ApusWorker",
                dependencies: ["ApusProtocols", "ApusPython", "ApusConfig", "ApusObserve", "ApusIPC", "ApusSys", "CApusSys"],
                swiftSettings: optimize),
        .target(name: "ApusMaster", dependencies: ["ApusConfig", "ApusObserve", "ApusIPC", "ApusProtocols", "ApusSys", "CApusSys"]),
        .target(name: "ApusRouter", dependencies: ["ApusConfig", "ApusMaster", "ApusProtocols", "ApusObserve", "ApusSys", "CApusSys"],
                swiftSettings: optimize),
        .target(name: "ApusTop", dependencies: ["ApusSys", "CApusSys"]),
        .executableTarget(name: "apus", dependencies: ["ApusMaster", "ApusWorker", "ApusRouter", "ApusTop", "ApusConfig", "ApusObserve", "ApusIPC"],
                          linkerSettings: link),
        .testTarget(name: "ApusProtocolsTests", dependencies: ["ApusProtocols"],
                    resources: [.copy("Corpus")]),
        .testTarget(name: "ApusConfigTests", dependencies: ["ApusConfig"]),
        .testTarget(name: "ApusIPCTests", dependencies: ["ApusIPC"]),
        .testTarget(name: "ApusMasterTests", dependencies: ["ApusMaster"]),
        .testTarget(name: "ApusObserveTests", dependencies: ["ApusObserve"]),
        .testTarget(name: "ApusWorkerTests", dependencies: ["ApusWorker"]),
        .testTarget(name: "ApusRouterTests", dependencies: ["ApusRouter"]),
        .testTarget(name: "ApusTopTests", dependencies: ["ApusTop"]),
    ]
)
