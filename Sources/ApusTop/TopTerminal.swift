// `apus top ADDR`: polls the stats server every interval and redraws on the terminal's
// alternate screen with plain ANSI escapes (no curses). q, Ctrl-C, SIGTERM or SIGHUP end it
// and give the terminal back as it was, also in the middle of a poll; Ctrl-Z gives it back
// until the shell's `fg`. An unreachable server is a line on the screen and
// another try at the next interval. When stdout is not a terminal, one snapshot is printed
// as plain text instead (for scripts).

#if canImport(Glibc)
import Glibc
#endif
import ApusSys
import CApusSys

/// The write end of the self-pipe the signal handlers write the signal number to.
nonisolated(unsafe) private var signalPipe: Int32 = -1

public enum Top {
    /// Runs `apus top`; the exit status.
    public static func run(_ address: StatsAddress, interval: Double) -> Int32 {
        if isatty(1) == 0 { return snapshot(address, interval: interval) }
        return TopScreen(address: address, interval: interval).run()
    }

    static func timeout(_ interval: Double) -> Double { min(10, max(2, interval)) }

    /// One plain snapshot on stdout (status 0), or why not on stderr (status 1).
    static func snapshot(_ address: StatsAddress, interval: Double) -> Int32 {
        switch StatsClient.fetch(address, timeout: timeout(interval), wallClock: wallClock()) {
        case let .failure(f):
            Sys.writeStderr("apus top: cannot read stats from \(address): \(f.description)\n")
            return 1
        case let .success(snapshot):
            let width = getenv("COLUMNS").flatMap { Int(String(cString: $0)) }.map { max(40, $0) } ?? 200
            let view = TopView(previous: nil, current: TopSample(snapshot, at: Sys.now()))
            let text = TopRender.lines(view, title: "apus top \(address)", width: width).joined(separator: "\n") + "\n"
            return write(text, to: 1) ? 0 : 1
        }
    }

    static func wallClock() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    @discardableResult
    static func write(_ text: String, to fd: Int32) -> Bool {
        var text = text
        return text.withUTF8 { buf in
            if case .done = Sys.writeAll(fd, UnsafeRawBufferPointer(buf)) { return true }
            return false
        }
    }
}

/// The live view: terminal set-up, the poll loop, restoring the terminal.
struct TopScreen {
    let address: StatsAddress
    let interval: Double

    /// What the last poll gave: a view to draw, or why there is none.
    enum Shown { case view(TopView), unreachable(String) }

    func run() -> Int32 {
        var fds: [Int32] = [-1, -1]
        guard apus_pipe_cloexec(&fds, 1) == 0 else {
            Sys.writeStderr("apus top: pipe: \(Sys.describe(errno))\n")
            return 1
        }
        signalPipe = fds[1]
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGQUIT, SIGTSTP, SIGCONT] { _ = apus_signal(sig, TopScreen.handler) }
        let terminal = Terminal(keyboard: isatty(0) != 0)
        terminal.enter()
        loop(terminal, signals: fds[0])
        terminal.leave()
        return 0
    }

    static let handler: @convention(c) (Int32) -> Void = { sig in
        var b = UInt8(truncatingIfNeeded: sig)
        _ = Glibc.write(signalPipe, &b, 1)
    }

    /// The terminal's mode as it was, and the switch to and from the view's mode.
    struct Terminal {
        let keyboard: Bool
        let saved: termios

        init(keyboard: Bool) {
            self.keyboard = keyboard
            var mode = termios()
            if keyboard { tcgetattr(0, &mode) }
            saved = mode
        }

        /// Keys one at a time, not echoed (ISIG stays: Ctrl-C is SIGINT, Ctrl-Z SIGTSTP);
        /// the alternate screen, the cursor hidden.
        func enter() {
            if keyboard {
                var raw = saved
                raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
                withUnsafeMutableBytes(of: &raw.c_cc) { cc in
                    cc[Int(VMIN)] = 1
                    cc[Int(VTIME)] = 0
                }
                tcsetattr(0, TCSANOW, &raw)
            }
            Top.write("\u{1B}[?1049h\u{1B}[?25l\u{1B}[H\u{1B}[2J", to: 1)
        }

        /// The cursor, the main screen and the keyboard's mode as they were.
        func leave() {
            Top.write("\u{1B}[?25h\u{1B}[?1049l", to: 1)
            if keyboard {
                var mode = saved
                tcsetattr(0, TCSANOW, &mode)
            }
        }

        /// Ctrl-Z: the terminal as it was, then stop as SIGTSTP's default does; on SIGCONT,
        /// the view's mode again.
        func suspend() {
            leave()
            _ = apus_signal_default(SIGTSTP)
            _ = Glibc.kill(getpid(), SIGTSTP)
            // Stopped here until SIGCONT.
            _ = apus_signal(SIGTSTP, TopScreen.handler)
            enter()
        }
    }

    private func loop(_ terminal: Terminal, signals: Int32) {
        var previous: TopSample?
        var readKeys = terminal.keyboard
        var last = Shown.unreachable("reading \(address)")
        while true {
            let shown: Shown
            switch StatsClient.fetch(address, timeout: Top.timeout(interval), wallClock: Top.wallClock(),
                                     interrupt: readKeys ? [signals, 0] : [signals]) {
            case let .failure(f) where f.interrupted:
                // A key or a signal came while the server was slow: see to it first.
                shown = last
            case let .success(snapshot):
                let sample = TopSample(snapshot, at: Sys.now())
                shown = .view(TopView(previous: previous, current: sample))
                previous = sample
            case let .failure(f):
                // The next server there may be another one: rates start over.
                previous = nil
                shown = .unreachable("cannot reach \(address): \(f.description) (trying again every \(formatFixed(interval, 1))s)")
            }
            last = shown
            draw(shown)
            let deadline = Sys.now() + interval
            while true {
                let left = deadline - Sys.now()
                if left <= 0 { break }
                var polled = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0),
                              pollfd(fd: readKeys ? 0 : -1, events: Int16(POLLIN), revents: 0)]
                guard case let .done(n) = Sys.call({ poll(&polled, 2, Int32(left * 1000) + 1) }), n > 0 else { continue }
                if polled[0].revents != 0 {
                    var sig: UInt8 = 0
                    if read(signals, &sig, 1) == 1 {
                        switch Int32(sig) {
                        case SIGWINCH, SIGCONT: draw(shown); continue
                        case SIGTSTP: terminal.suspend(); draw(shown); continue
                        default: return
                        }
                    }
                }
                if polled[1].revents != 0 {
                    var keys = [UInt8](repeating: 0, count: 64)
                    let got: Int
                    switch Sys.call({ read(0, &keys, keys.count) }) {
                    case let .done(n) where n > 0: got = n
                    case .wouldBlock: continue
                    default: readKeys = false; continue  // the end of input, or it failed: no keys
                    }
                    // q, Q, or Ctrl-C / Ctrl-D arriving as bytes.
                    if keys[0..<got].contains(where: { $0 == UInt8(ascii: "q") || $0 == UInt8(ascii: "Q") || $0 == 3 || $0 == 4 }) {
                        return
                    }
                }
            }
        }
    }

    private func draw(_ shown: Shown) {
        let (width, height) = size()
        let title = "apus top \(address)  every \(formatFixed(interval, 1))s  \(clock())  (q quits)"
        let lines: [String]
        switch shown {
        case let .view(view): lines = TopRender.lines(view, title: title, width: width)
        case let .unreachable(reason): lines = TopRender.unreachable(title: title, reason: reason, width: width)
        }
        var out = "\u{1B}[H"
        for (i, line) in lines.prefix(height).enumerated() {
            out += (i == 0 ? "\u{1B}[7m" + line + "\u{1B}[0m" : line) + "\u{1B}[K"
            if i < height - 1 { out += "\r\n" }
        }
        out += "\u{1B}[J"
        Top.write(out, to: 1)
    }

    /// The terminal's columns and rows (80x24 when it does not say).
    private func size() -> (Int, Int) {
        var ws = winsize()
        let rc = withUnsafeMutablePointer(to: &ws) { ioctl(1, UInt(TIOCGWINSZ), $0) }
        guard rc == 0, ws.ws_col > 0, ws.ws_row > 0 else { return (80, 24) }
        return (Int(ws.ws_col), Int(ws.ws_row))
    }

    /// "HH:MM:SS", local time.
    private func clock() -> String {
        var t = time(nil)
        var parts = tm()
        localtime_r(&t, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}
