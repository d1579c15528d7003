#if canImport(Glibc)
import Glibc
#endif
import ApusConfig

/// What the master gives a zygote (and the zygote each worker it forks, with the slot set):
/// the settings of one generation and the shared resources of the master.
public struct WorkerLaunch {
    /// "zygote", "preloader" or "worker 3": the process's name in the log and in `ps`,
    /// made before the fork so that the child runs no string formatting of its own.
    public var role: String
    public var slot: UInt32
    public var generation: UInt32
    public var configuration: Configuration
    public var python: PythonInstallation
    /// Write end of the master's status pipe.
    public var statusFD: Int32
    public var masterPID: pid_t
    /// Listening sockets inherited from the master, with what they were bound as.
    public var listeners: [BoundSocket]
    /// Shared open-connection counts, for balancing accepts across workers.
    public var tally: ConnectionTally
    /// The apus version, for the app's `apus.version`.
    public var version = ""
    /// When the master started (Unix time), for the app's `apus.started_on`.
    public var startedOn = 0

    public init(role: String, slot: UInt32, generation: UInt32, configuration: Configuration, python: PythonInstallation,
                statusFD: Int32, masterPID: pid_t, listeners: [BoundSocket], tally: ConnectionTally) {
        self.role = role
        self.slot = slot
        self.generation = generation
        self.configuration = configuration
        self.python = python
        self.statusFD = statusFD
        self.masterPID = masterPID
        self.listeners = listeners
        self.tally = tally
    }
}
