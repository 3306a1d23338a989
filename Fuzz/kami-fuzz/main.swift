// kami-fuzz: libFuzzer over KamiFuzzTargets. Built only with KAMI_FUZZ=1 (see Fuzz/run):
//   KAMI_FUZZ_TARGET=frame|json|csv|config kami-fuzz [libFuzzer options] [corpus dirs]
import Foundation
import KamiFuzzTargets

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

nonisolated(unsafe) var target = FuzzTarget.frame

guard let name = ProcessInfo.processInfo.environment["KAMI_FUZZ_TARGET"], let chosen = FuzzTarget(rawValue: name) else {
    FileHandle.standardError.write(Data("set KAMI_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue))\n".utf8))
    exit(2)
}
target = chosen
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    target.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
})
