import KamiClient

/// kamictl, the operator's command line, as a library: argument parsing, the requests,
/// and the text it prints, so that tests reach all of it. The `kamictl` executable only
/// hands this its arguments, environment and working directory, prints the outcome and
/// exits with its status.
///
/// kamictl talks to kamid over the Unix socket in JSON, where operator operations are
/// allowed and no hello is needed.
public enum KamiCtl {
    /// kamictl's exit statuses. Scripts depend on them: never renumbered.
    public enum Exit: Int32, Sendable {
        /// The operation succeeded.
        case ok = 0
        /// kamid answered with an error; the message is on stderr.
        case failed = 1
        /// The command line was wrong; the usage is on stderr.
        case usage = 2
        /// kamid could not be reached (no socket, refused, timed out, connection lost).
        case unreachable = 3
        /// `verify` or `audit verify` ran and found a violation or a broken chain.
        case problemsFound = 4
    }

    /// What a run printed and how it ended.
    public struct Outcome: Sendable, Equatable {
        /// Text for standard output.
        public var stdout: String
        /// Text for standard error.
        public var stderr: String
        /// The exit status.
        public var exit: Exit

        /// An outcome.
        public init(stdout: String = "", stderr: String = "", exit: Exit) {
            self.stdout = stdout
            self.stderr = stderr
            self.exit = exit
        }
    }

    /// The environment variable naming kamid's socket when `--socket` is not given.
    public static let socketEnvironmentVariable = "KAMI_SOCKET"

    /// Default wait for kamid's reply: imports of millions of rows take minutes, and an
    /// operator can always interrupt; a stuck kamid still ends the wait eventually.
    public static let requestTimeoutMsDefault = 600_000
    /// The largest secret file `deliver` sends: half a request line, so the JSON escapes of
    /// its newlines and tabs still fit.
    static let deliverFileBytesMax = 32_768

    /// Wait to connect to the Unix socket: a local connect either works at once or kamid
    /// is not there (or its backlog is full for this long, which is as good as down).
    public static let connectTimeoutMs = 2_000

    /// Parses `arguments` (without the program name) and runs the command against kamid.
    /// `environment` supplies `KAMI_SOCKET`; relative CSV paths are made absolute against
    /// `currentDirectory`, because kamid reads the file and has its own working directory.
    public static func run(
        arguments: [String], environment: [String: String], currentDirectory: String, progress: ProgressSink? = nil
    ) -> Outcome {
        switch parse(arguments, environment: environment) {
        case .failure(let error):
            return Outcome(stderr: "kamictl: \(error.message)\n\n\(usage(error.topic))\n", exit: .usage)
        case .success(let invocation):
            return execute(invocation, currentDirectory: currentDirectory, progress: progress)
        }
    }
}
