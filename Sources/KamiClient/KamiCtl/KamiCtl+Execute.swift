import KamiCore
public import KamiProtocol

extension KamiCtl {
    /// Runs a parsed command: connects to kamid's socket, sends the request, and turns the
    /// reply into text and an exit status.
    public static func execute(_ invocation: Invocation, currentDirectory: String) -> Outcome {
        let request: Request
        switch invocation.command {
        case .help(let topic):
            return Outcome(stdout: usage(topic) + "\n", exit: .ok)
        case .importCSV(let path, let sku, let batch, let dryRun):
            let absolute = absolutePath(path, currentDirectory: currentDirectory)
            // kamid reads the file, possibly in another mount namespace; a file missing
            // here too is almost surely a typo, and this message is clearer than kamid's.
            guard Syscall.exists(absolute) else {
                return Outcome(stderr: "kamictl: \(absolute): no such file\n", exit: .failed)
            }
            request = operatorRequest(.importCSV) {
                $0.sku = sku
                $0.path = absolute
                $0.batch = batch
                $0.dryRun = dryRun ? true : nil
            }
        case .skuSet(let sku, let name, let priceCents, let perUserLimit, let activationURL):
            request = operatorRequest(.skuSet) {
                $0.sku = sku
                $0.name = name
                $0.priceCents = priceCents
                $0.perUserLimit = perUserLimit
                $0.activationURL = activationURL
            }
        case .stock(let sku):
            // Without a SKU, the per-SKU counters come from stats.
            request = sku.map { sku in operatorRequest(.stock) { $0.sku = sku } } ?? operatorRequest(.stats) { _ in }
        case .order(let id, _):
            request = operatorRequest(.order) { $0.order = id }
        case .verify:
            request = operatorRequest(.verify) { _ in }
        case .stats:
            request = operatorRequest(.stats) { _ in }
        }
        return exchange(request, invocation)
    }

    private static func operatorRequest(_ op: Operation, _ fill: (inout Request) -> Void) -> Request {
        var request = Request(id: .number(1), op: op)
        fill(&request)
        return request
    }

    /// `path` made absolute against `currentDirectory`.
    static func absolutePath(_ path: String, currentDirectory: String) -> String {
        if path.hasPrefix("/") { return path }
        let base = currentDirectory.hasSuffix("/") ? String(currentDirectory.dropLast()) : currentDirectory
        let relative = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        return base + "/" + relative
    }

    private static func exchange(_ request: Request, _ invocation: Invocation) -> Outcome {
        let endpoint = KamiEndpoint.unix(path: invocation.socketPath)
        let options = ConnectionOptions(
            encoding: .json, connectTimeoutMs: connectTimeoutMs, requestTimeoutMs: invocation.timeoutMs)
        let reply: Reply
        do {
            let connection = try KamiConnection(endpoint: endpoint, options: options)
            defer { connection.close() }
            reply = try connection.send(request)
        } catch {
            let exit: Exit = error.code == .unavailable ? .unreachable : .failed
            let prefix = exit == .unreachable ? "cannot reach kamid: " : ""
            return Outcome(stderr: "kamictl: \(prefix)\(error.message)\n", exit: exit)
        }
        return render(reply, invocation)
    }

    /// The outcome for kamid's `reply` to the invocation's request.
    static func render(_ reply: Reply, _ invocation: Invocation) -> Outcome {
        let showSecrets: Bool
        if case .order(_, let show) = invocation.command { showSecrets = show } else { showSecrets = false }
        let shown = showSecrets ? reply : hidingSecrets(reply)
        var outcome: Outcome
        switch shown.result {
        case .failure(let error):
            outcome = Outcome(stderr: "kamictl: \(error.code.rawValue): \(error.message)\n", exit: .failed)
        case .success(let body):
            outcome = describe(body, invocation.command)
        }
        if invocation.json {
            var line: [UInt8] = []
            JSONCodec.encode(shown, into: &line)
            outcome.stdout = String(decoding: line, as: UTF8.self)
        }
        return outcome
    }

    /// The reply with every secret removed: kamictl shows them only when asked, so that a
    /// support session or a terminal log does not collect them.
    public static func hidingSecrets(_ reply: Reply) -> Reply {
        guard case .success(.order(var order)) = reply.result else { return reply }
        for index in order.codes.indices { order.codes[index].secret = nil }
        return Reply(id: reply.id, result: .success(.order(order)))
    }

    /// Text and status for a successful body.
    private static func describe(_ body: ReplyBody, _ command: Command) -> Outcome {
        switch (command, body) {
        case (.skuSet, .fields(let fields)):
            return Outcome(stdout: Format.skuSet(fields), exit: .ok)
        case (.importCSV, .fields(let fields)):
            return Outcome(stdout: Format.importReport(fields), exit: .ok)
        case (.stock(.some), .stock(let stock)):
            return Outcome(stdout: Format.stock([stock]), exit: .ok)
        case (.stock(.none), .fields(let fields)):
            return Outcome(stdout: Format.stock(Format.stocks(fromStats: fields)), exit: .ok)
        case (.order(_, let showSecrets), .order(let order)):
            return Outcome(stdout: Format.order(order, secretsShown: showSecrets), exit: .ok)
        case (.verify, .fields(let fields)):
            let (text, violations) = Format.verify(fields)
            guard violations == 0 else {
                return Outcome(stdout: text, stderr: "kamictl: verify found \(violations) violation"
                    + (violations == 1 ? "\n" : "s\n"), exit: .failed)
            }
            return Outcome(stdout: text, exit: .ok)
        case (.stats, .fields(let fields)):
            return Outcome(stdout: Format.fields(fields), exit: .ok)
        default:
            return Outcome(stderr: "kamictl: kamid answered with an unexpected reply; is it a different version?\n",
                           exit: .failed)
        }
    }
}
