import Foundation
import KamiHTTP
import KamiSupplierSim
import KamiUpstream

// kami-supplier-sim: a supplier speaking the generic API, for tests and benchmarks.
// Prints "listening PORT" once ready; stops on SIGTERM or SIGINT.
let usage = """
    usage: kami-supplier-sim [--listen HOST:PORT] [--id ID] [--style form|gateway|hmac] [--merchant ID]
           [--key-file FILE] [--sign md5|sha256] [--product ID:PRICE[:STOCK]]... [--latency-ms MS]
           [--latency-sigma S] [--fail-rate R] [--timeout-rate R] [--unknown-rate R] [--async-rate R]
           [--callback-delay-ms MS] [--duplicate-callback-rate R] [--late-callback-ms MS]
           [--bad-callback-signature] [--tls-cert FILE --tls-key FILE] [--seed N]
    """

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("kami-supplier-sim: \(message)\n".utf8))
    exit(2)
}

var settings = SimSettings()
var host = "127.0.0.1"
var port: UInt16 = 0
var certFile: String?
var keyFile: String?
/// The command line, read front to back.
final class Arguments {
    var rest: [String]
    init() { rest = Array(CommandLine.arguments.dropFirst()) }
}
let arguments = Arguments()
@MainActor func value(_ flag: String) -> String {
    guard !arguments.rest.isEmpty else { fail("\(flag) needs a value") }
    return arguments.rest.removeFirst()
}
@MainActor func rate(_ flag: String) -> Double {
    guard let number = Double(value(flag)), number >= 0, number <= 1 else { fail("\(flag) needs a rate in 0...1") }
    return number
}
@MainActor func integer(_ flag: String) -> Int64 {
    guard let number = Int64(value(flag)), number >= 0 else { fail("\(flag) needs a non-negative integer") }
    return number
}
while !arguments.rest.isEmpty {
    let flag = arguments.rest.removeFirst()
    switch flag {
    case "--listen":
        let text = value(flag)
        guard let colon = text.lastIndex(of: ":"), let parsed = UInt16(text[text.index(after: colon)...]) else {
            fail("--listen needs HOST:PORT")
        }
        host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        port = parsed
    case "--id": settings.id = value(flag)
    case "--style":
        guard let style = SupplierStyle(rawValue: value(flag)), style != .kami else { fail("--style needs form, gateway or hmac") }
        settings.style = style
    case "--merchant": settings.merchantID = value(flag)
    case "--key-file":
        do { settings.key = try SecretFile.read(value(flag)) } catch { fail(error.description) }
    case "--sign":
        guard let digest = SignDigest(rawValue: value(flag)) else { fail("--sign needs md5 or sha256") }
        settings.digest = digest
    case "--product":
        let parts = value(flag).split(separator: ":").map(String.init)
        guard parts.count == 2 || parts.count == 3, let price = Int64(parts[1]) else { fail("--product needs ID:PRICE[:STOCK]") }
        settings.products[parts[0]] = (price, parts.count == 3 ? Int(parts[2]) : nil)
    case "--latency-ms": settings.latencyMs = Double(integer(flag))
    case "--latency-sigma":
        guard let sigma = Double(value(flag)), sigma >= 0, sigma <= 3 else { fail("--latency-sigma needs 0...3") }
        settings.latencySigma = sigma
    case "--fail-rate": settings.failRate = rate(flag)
    case "--timeout-rate": settings.timeoutRate = rate(flag)
    case "--unknown-rate": settings.unknownRate = rate(flag)
    case "--async-rate": settings.asyncRate = rate(flag)
    case "--callback-delay-ms": settings.callbackDelayMs = integer(flag)
    case "--duplicate-callback-rate": settings.duplicateCallbackRate = rate(flag)
    case "--late-callback-ms": settings.lateCallbackMs = integer(flag)
    case "--bad-callback-signature": settings.badCallbackSignature = true
    case "--tls-cert": certFile = value(flag)
    case "--tls-key": keyFile = value(flag)
    case "--seed": settings.seed = UInt64(integer(flag))
    case "--help", "-h":
        print(usage)
        exit(0)
    default: fail("unknown flag \(flag)\n\(usage)")
    }
}
var tls: TLSContext?
if let certFile, let keyFile {
    do { tls = try TLSContext.server(certificateFile: certFile, keyFile: keyFile) } catch { fail(error.message) }
} else if certFile != nil || keyFile != nil {
    fail("--tls-cert and --tls-key go together")
}
let sim = SupplierSim(settings: settings, host: host, port: port, tls: tls)
do { try sim.start() } catch { fail(error.message) }
FileHandle.standardOutput.write(Data("listening \(sim.port)\n".utf8))
signal(SIGTERM, SIG_IGN)
signal(SIGINT, SIG_IGN)
let signals = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .main)
let interrupts = DispatchSource.makeSignalSource(signal: SIGINT, queue: .main)
for source in [signals, interrupts] {
    source.setEventHandler {
        sim.stop()
        exit(0)
    }
    source.resume()
}
dispatchMain()
