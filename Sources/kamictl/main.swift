// kamictl: wiring only. Parsing, requests and output live in KamiClient's `KamiCtl` so
// that tests reach them.
import Foundation
import KamiClient

let outcome = KamiCtl.run(
    arguments: Array(CommandLine.arguments.dropFirst()),
    environment: ProcessInfo.processInfo.environment,
    currentDirectory: FileManager.default.currentDirectoryPath)
FileHandle.standardOutput.write(Data(outcome.stdout.utf8))
FileHandle.standardError.write(Data(outcome.stderr.utf8))
exit(outcome.exit.rawValue)
