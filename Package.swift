// swift-tools-version:6.0
import PackageDescription

// Layering (see docs/architecture.md):
//   apus (main) -> ApusMaster, ApusWorker, ApusConfig
//   ApusMaster  -> ApusConfig, ApusIPC, ApusSys    (never ApusPython: the master runs no Python)
//   ApusWorker  -> ApusProtocols, ApusPython, ApusConfig, ApusIPC, ApusSys
//   ApusIPC     -> ApusConfig, ApusSys             (what master and workers share)
//   ApusSys     -> CApusSys                        (the syscall policy, the clock, epoll)
//   ApusPython  -> ApusProtocols, CApusSys          (CPython loaded at run time with dlopen)
//   ApusProtocols, ApusConfig: pure Swift, no syscalls
// Every function in its own section, so that the linker can place the code a worker runs
// together (link/apus.order, see "Memory of a worker" in docs/architecture.md).
let sections: [SwiftSetting] = [.unsafeFlags(["-Xfrontend", "-function-sections"], .when(configuration: .release))]
// The request path is built with -O, not -Ounchecked: a failed bounds or overflow check on
// bytes from a socket must stop the worker, not run on as undefined behaviour. The measured
// difference is in "Build flags" in docs/architecture.md.
let optimize: [SwiftSetting] = sections + [.unsafeFlags(["-O", "-wmo"], .when(configuration: .release))]

// lld lays the functions out in the order of link/apus.order (scripts/order-file.sh writes it)
// and aligns segments to 64 KiB, the unit in which the kernel maps code into a process.
let layout: [LinkerSetting] = [.unsafeFlags([
    "-use-ld=lld",
    "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/link/apus.order",
    "-Xlinker", "--no-warn-symbol-ordering",
    "-Xlinker", "-z", "-Xlinker", "max-page-size=65536",
    "-Xlinker", "\(Context.packageDirectory)/link/sections.ld",
    "-Xlinker", "-z", "-Xlinker", "now",
    "-Xlinker", "--no-export-dynamic",
], .when(configuration: .release))]

let package = Package(
    name: "apus",
    platforms: [.macOS(.v13)],
    products: [.executable(name: "apus", targets: ["apus"])],
    targets: [
        .target(name: "CApusSys", cSettings: [.unsafeFlags(["-ffunction-sections"])]),
        .target(name: "ApusConfig", dependencies: ["ApusProtocols"], swiftSettings: sections),
        .target(name: "ApusObserve", dependencies: ["ApusSys"], swiftSettings: sections),
        .target(name: "ApusSys", dependencies: ["CApusSys"], swiftSettings: optimize),
        .target(name: "ApusIPC", dependencies: ["ApusConfig", "ApusSys"], swiftSettings: sections),
        .target(name: "ApusProtocols", swiftSettings: optimize),
        .target(name: "ApusPython", dependencies: ["ApusProtocols", "ApusObserve", "CApusSys"], swiftSettings: optimize),
        .target(name: "ApusWorker",
                dependencies: ["ApusProtocols", "ApusPython", "ApusConfig", "ApusObserve", "ApusIPC", "ApusSys", "CApusSys"],
                swiftSettings: optimize),
        .target(name: "ApusMaster", dependencies: ["ApusConfig", "ApusObserve", "ApusIPC", "ApusSys", "CApusSys"],
                swiftSettings: sections),
        // The Swift runtime is linked in: one self-contained binary to copy into an image,
        // and each worker maps only the runtime code it uses (about 1.5 MiB less RSS).
        .executableTarget(name: "apus", dependencies: ["ApusMaster", "ApusWorker", "ApusConfig", "ApusObserve", "ApusIPC"],
                          swiftSettings: sections,
                          linkerSettings: [.unsafeFlags(["-static-stdlib"])] + layout),
        .testTarget(name: "ApusProtocolsTests", dependencies: ["ApusProtocols"],
                    resources: [.copy("Corpus")]),
        .testTarget(name: "ApusConfigTests", dependencies: ["ApusConfig"]),
        .testTarget(name: "ApusIPCTests", dependencies: ["ApusIPC"]),
        .testTarget(name: "ApusMasterTests", dependencies: ["ApusMaster"]),
        .testTarget(name: "ApusObserveTests", dependencies: ["ApusObserve"]),
        .testTarget(name: "ApusWorkerTests", dependencies: ["ApusWorker"]),
    ]
)
