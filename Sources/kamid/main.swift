// kamid: wiring only. Everything lives in KamiServer so that tests reach it.
import Glibc
import KamiServer

exit(Daemon.main(arguments: Array(CommandLine.arguments.dropFirst())))
