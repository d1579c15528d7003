extension PythonInterpreter {
    /// Binds faulthandler's dump of every thread's Python stack to `signal`, written to
    /// stderr (the log). Its handler reads the threads' frames without the GIL, so the dump
    /// works while a thread holds the GIL in a loop or sits in a C call; the `--harakiri`
    /// watchdog sends the signal to itself. False (the traceback printed) when it cannot.
    /// GIL held.
    public func registerStackDump(signal: Int32) -> Bool {
        run("import faulthandler as _faulthandler\n_faulthandler.register(\(signal), file=2, all_threads=True, chain=False)\ndel _faulthandler\n")
    }
}
