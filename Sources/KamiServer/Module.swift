// KamiServer
