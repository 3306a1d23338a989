import KamiClient
import KamiCore
public import KamiProtocol

extension KamiCtl {
    /// Runs a parsed command: connects to kamid's socket, sends the request, and turns the
    /// reply into text and an exit status.
    ///
    /// `progress`, when given, receives progress lines of long imports and exports while
    /// kamictl waits for the reply.
    public static func execute(_ invocation: Invocation, currentDirectory: String, progress: ProgressSink? = nil)
        -> Outcome
    {
        let request: Request
        switch invocation.command {
        case .help(let topic):
            return Outcome(stdout: usage(topic) + "\n", exit: .ok)
        case .importCSV(let path, let sku, let batch, let dryRun, let sheet):
            let absolute = absolutePath(path, currentDirectory: currentDirectory)
            // kamid reads the file, possibly in another mount namespace; a file missing
            // here too is almost surely a typo, and this message is clearer than kamid's.
            guard FileChecks.exists(absolute) else {
                return Outcome(stderr: "kamictl: \(absolute): no such file\n", exit: .failed)
            }
            request = operatorRequest(.importCSV) {
                $0.sku = sku
                $0.path = absolute
                $0.batch = batch
                $0.dryRun = dryRun ? true : nil
                $0.name = sheet
            }
        case .skuSet(let sku, let name, let priceCents, let perUserLimit, let activationURL, let manual, let reviewTTL, let bundle,
                     let usageGuide):
            request = operatorRequest(.skuSet) {
                $0.sku = sku
                $0.name = name
                $0.priceCents = priceCents
                $0.perUserLimit = perUserLimit
                $0.activationURL = activationURL
                $0.manualDelivery = manual
                $0.reviewTTLMs = reviewTTL
                $0.bundle = bundle
                $0.usageGuide = usageGuide
            }
        case .deliver(let order, let file?, let cost):
            // kamictl reads the file (the operator's, not kamid's): the codes travel over the
            // socket and are never named by path to kamid, printed or logged.
            let absolute = absolutePath(file, currentDirectory: currentDirectory)
            let contents: [UInt8]
            switch FileChecks.read(absolute, limit: deliverFileBytesMax) {
            case .success(let bytes): contents = bytes
            case .failure(let problem): return Outcome(stderr: "kamictl: \(absolute): \(problem.message)\n", exit: .failed)
            }
            // Sent as JSON text: a file that is not UTF-8 (GBK, UTF-16) would arrive altered.
            guard String(validating: contents, as: UTF8.self) != nil else {
                return Outcome(stderr: "kamictl: \(absolute): is not UTF-8 text; save it as UTF-8 (one code per line)\n",
                               exit: .failed)
            }
            request = operatorRequest(.deliver) {
                $0.order = order
                $0.secrets = Secret(bytes: contents)
                $0.costCents = cost
            }
        case .deliver(let order, nil, _):
            request = operatorRequest(.reviewApprove) { $0.order = order }
        case .stock(let sku):
            // Without a SKU, the per-SKU counters come from stats.
            request = sku.map { sku in operatorRequest(.stock) { $0.sku = sku } } ?? operatorRequest(.stats) { _ in }
        case .order(let id, _):
            request = operatorRequest(.order) { $0.order = id }
        case .verify:
            request = operatorRequest(.verify) { _ in }
        case .stats:
            request = operatorRequest(.stats) { _ in }
        case .skuList:
            request = operatorRequest(.skuList) { _ in }
        case .export(let sku, let path, let withSecrets, let force):
            let chosen = path ?? "\(sku)-export-\(timestampForFileName()).csv"
            let absolute = absolutePath(chosen, currentDirectory: currentDirectory)
            // Nothing is removed here: kamid checks the request (the SKU, the target) first, writes
            // a temporary file and renames it over the target only when the export succeeded.
            // These early checks only give a clearer message; kamid makes the same ones.
            if let kind = FileChecks.nonRegularFileKind(absolute) {
                return Outcome(
                    stderr: "kamictl: \(absolute) exists and is \(kind), not a regular file; refusing to replace it\n",
                    exit: .failed)
            }
            if FileChecks.exists(absolute) && !force {
                return Outcome(stderr: "kamictl: \(absolute) exists; choose another --out or add --force\n", exit: .failed)
            }
            request = operatorRequest(.export) {
                $0.sku = sku
                $0.path = absolute
                $0.withSecrets = withSecrets ? true : nil
                $0.replace = force ? true : nil
            }
        case .entitlements(let user, _, let limit, let cursor):
            request = operatorRequest(.entitlements) {
                $0.user = user
                $0.limit = limit
                $0.cursor = cursor
            }
        case .voidCode(let code):
            request = operatorRequest(.void) { $0.codeID = code }
        case .voidBatch(let batch):
            request = operatorRequest(.void) { $0.batch = batch }
        case .refund(let order):
            request = operatorRequest(.refund) { $0.order = order }
        case .reload:
            request = operatorRequest(.reload) { _ in }
        case .auditVerify:
            request = operatorRequest(.auditVerify) { _ in }
        case .tokenNew(let client):
            request = operatorRequest(.tokenNew) { $0.client = client }
        case .upstream(let command):
            if case .reconcile(_, _, _, let statement?) = command,
               !FileChecks.exists(absolutePath(statement, currentDirectory: currentDirectory)) {
                return Outcome(stderr: "kamictl: \(absolutePath(statement, currentDirectory: currentDirectory)): no such file\n",
                               exit: .failed)
            }
            request = command.request(currentDirectory: currentDirectory)
        case .risk(let command):
            do throws(UsageError) { request = try command.request() } catch {
                return Outcome(stderr: "kamictl: \(error.message)\n", exit: .usage)
            }
        case .webhooks(let command):
            request = command.request()
        case .money(let command):
            // The generated codes' file is written after the reply: its path made absolute now.
            if case .couponAdd(let batch, let discount, let perUser, let file, let generate, let out?) = command, !out.hasPrefix("/") {
                var absolute = invocation
                absolute.command = .money(.couponAdd(batch: batch, discountCents: discount, perUser: perUser,
                                                     file: file.map { absolutePath($0, currentDirectory: currentDirectory) },
                                                     generate: generate, out: absolutePath(out, currentDirectory: currentDirectory)))
                return execute(absolute, currentDirectory: "/", progress: progress)
            }
            switch moneyRequest(command, currentDirectory: currentDirectory) {
            case .success(let made): request = made
            case .failure(let problem): return Outcome(stderr: "kamictl: \(problem.message)\n", exit: .failed)
            }
        }
        var poller: ProgressPoller?
        switch invocation.command {
        case .importCSV, .export:
            if invocation.progress, let progress {
                poller = ProgressPoller(socketPath: invocation.socketPath, sink: progress)
            }
        default:
            break
        }
        let outcome = exchange(request, invocation)
        poller?.stop()
        return outcome
    }

    /// `20261125-071500` in UTC, for default export file names.
    static func timestampForFileName() -> String { FileChecks.utcTimestamp() }

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
        switch invocation.command {
        case .order(_, let show), .entitlements(_, let show, _, _): showSecrets = show
        case .tokenNew: showSecrets = true
        default: showSecrets = false
        }
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
        switch reply.result {
        case .success(.order(var order)):
            for index in order.codes.indices { order.codes[index].secret = nil }
            return Reply(id: reply.id, result: .success(.order(order)))
        case .success(.codes(var codes, let next)):
            for index in codes.indices { codes[index].secret = nil }
            return Reply(id: reply.id, result: .success(.codes(codes, nextCursor: next)))
        case .success(.fields(let fields)):
            // A minted token is shown once, to the operator who asked for it; nothing else
            // in a fields reply is secret.
            return Reply(id: reply.id, result: .success(.fields(fields)))
        default:
            return reply
        }
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
                    + (violations == 1 ? "\n" : "s\n"), exit: .problemsFound)
            }
            return Outcome(stdout: text, exit: .ok)
        case (.skuList, .fields(let fields)):
            return Outcome(stdout: Format.skuList(fields), exit: .ok)
        case (.export, .fields(let fields)):
            return Outcome(stdout: Format.exportReport(fields), exit: .ok)
        case (.entitlements(let user, let showSecrets, _, _), .codes(let codes, let next)):
            return Outcome(stdout: Format.entitlements(user: user, codes, nextCursor: next, secretsShown: showSecrets),
                           exit: .ok)
        case (.voidCode, .fields(let fields)), (.voidBatch, .fields(let fields)):
            return Outcome(stdout: Format.voidReport(fields), exit: .ok)
        case (.refund, .order(let order)):
            return Outcome(stdout: Format.order(order, secretsShown: false), exit: .ok)
        case (.reload, .fields(let fields)):
            return Outcome(stdout: Format.reload(fields), exit: .ok)
        case (.auditVerify, .fields(let fields)):
            let (text, clean) = Format.auditVerify(fields)
            return clean ? Outcome(stdout: text, exit: .ok)
                : Outcome(stdout: text, stderr: "kamictl: the audit chain is broken\n", exit: .problemsFound)
        case (.tokenNew, .fields(let fields)):
            return Outcome(stdout: Format.tokenNew(fields), exit: .ok)
        case (.stats, .fields(let fields)):
            return Outcome(stdout: Format.fields(fields), exit: .ok)
        case (.upstream(.refund), .order(let order)):
            return Outcome(stdout: Format.order(order, secretsShown: false), exit: .ok)
        case (.upstream(let command), .fields(let fields)):
            return Outcome(stdout: describeUpstream(command, fields), exit: .ok)
        case (.risk(let command), let body):
            return Outcome(stdout: describeRisk(command, body), exit: .ok)
        case (.webhooks(let command), .fields(let fields)):
            return Outcome(stdout: describeWebhooks(command, fields), exit: .ok)
        case (.money(let command), .fields(let fields)):
            return describeMoney(command, fields, currentDirectory: "/")
        case (.deliver(let order, let file, _), .fields(let fields)):
            // Operator replies travel as fields: the order's state and units, never its codes.
            let qty = Format.int(fields, "qty") ?? 0
            let units = qty == 1 ? "1 unit" : "\(qty) units"
            let how = file == nil ? "from the pool" : "by hand"
            if Format.text(fields, "state") == "reserved" {
                // --from-pool on an unpaid held order approves it as an ordinary hold.
                return Outcome(stdout: "order \(order) reserved: approved unpaid, nothing delivered; "
                    + "the buyer pays it with commit\n", exit: .ok)
            }
            return Outcome(stdout: "order \(order) \(Format.text(fields, "state") ?? "?"): \(units) delivered \(how) "
                + "(the buyer sees the codes with order or wait)\n", exit: .ok)
        default:
            return Outcome(stderr: "kamictl: kamid answered with an unexpected reply; is it a different version?\n",
                           exit: .failed)
        }
    }
}
