import KamiClient
import Foundation
import KamiCore
import KamiProtocol
import Synchronization

extension KamiCtl {
    /// Where progress lines go while kamictl waits for a long import or export: stderr in
    /// the executable, a collector in tests.
    public struct ProgressSink: Sendable {
        /// Rewrite one line in place (`\r`) rather than print a line now and then.
        public var isTerminal: Bool
        /// Writes text as given (no newline added).
        public var write: @Sendable (String) -> Void

        /// A sink.
        public init(isTerminal: Bool, write: @escaping @Sendable (String) -> Void) {
            self.isTerminal = isTerminal
            self.write = write
        }
    }

    /// How often kamictl asks kamid how far the job has come.
    static let progressPollMs = 500
    /// A job shorter than this prints no progress at all.
    static let progressQuietMs: Int64 = 1_000
    /// Without a terminal, one line per this many ms at most.
    static let progressLineEveryMs: Int64 = 5_000

    /// Polls kamid's `jobs` on a second connection while the main one waits for the reply.
    final class ProgressPoller: @unchecked Sendable {
        // @unchecked: `thread` is written once in init; the rest is atomic or immutable.
        private let stopping = Atomic<Bool>(false)
        private let finished = Atomic<Bool>(false)

        init(socketPath: String, sink: ProgressSink) {
            let thread = Thread { [self] in
                run(socketPath: socketPath, sink: sink)
                finished.store(true, ordering: .releasing)
            }
            thread.name = "kamictl-progress"
            thread.start()
        }

        func stop() {
            stopping.store(true, ordering: .relaxed)
            while !finished.load(ordering: .acquiring) { usleep(2_000) }
        }

        private func run(socketPath: String, sink: ProgressSink) {
            var connection: KamiConnection?
            var printedInPlace = false
            var lastLineMs: Int64 = 0
            var waitedMs = 0
            while !stopping.load(ordering: .relaxed) {
                usleep(20_000)
                waitedMs += 20
                guard waitedMs >= KamiCtl.progressPollMs else { continue }
                waitedMs = 0
                do throws(KamiError) {
                    if connection == nil {
                        connection = try KamiConnection(
                            endpoint: .unix(path: socketPath),
                            options: ConnectionOptions(encoding: .json, connectTimeoutMs: connectTimeoutMs,
                                                       requestTimeoutMs: 2_000))
                    }
                    let reply = try connection!.send(Request(id: .number(1), op: .jobs))
                    guard case .success(.fields(let fields)) = reply.result,
                          case .array(let jobs)? = fields.first(where: { $0.0 == "jobs" })?.1,
                          case .object(let job)? = jobs.first,
                          let elapsed = Format.int(job, "elapsed_ms"), elapsed >= KamiCtl.progressQuietMs
                    else { continue }
                    let line = Format.progress(job)
                    if sink.isTerminal {
                        sink.write("\r" + line + "\u{1B}[K")
                        printedInPlace = true
                    } else if elapsed - lastLineMs >= KamiCtl.progressLineEveryMs || lastLineMs == 0 {
                        sink.write(line + "\n")
                        lastLineMs = elapsed
                    }
                } catch {
                    // Progress is best effort: an old kamid without `jobs`, or a busy one.
                    connection = nil
                }
            }
            connection?.close()
            if printedInPlace { sink.write("\r\u{1B}[K") }
        }
    }
}
