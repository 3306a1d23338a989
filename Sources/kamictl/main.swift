// kamictl: wiring only. Parsing, requests and output live in the KamiCtl library, so that
// tests reach them and a storefront importing KamiClient gets the client alone.
import Foundation
import Glibc
import KamiCtl

let outcome = KamiCtl.run(
    arguments: Array(CommandLine.arguments.dropFirst()),
    environment: ProcessInfo.processInfo.environment,
    currentDirectory: FileManager.default.currentDirectoryPath,
    progress: KamiCtl.ProgressSink(isTerminal: isatty(2) == 1) { text in
        FileHandle.standardError.write(Data(text.utf8))
    })
FileHandle.standardOutput.write(Data(outcome.stdout.utf8))
FileHandle.standardError.write(Data(outcome.stderr.utf8))
exit(outcome.exit.rawValue)
