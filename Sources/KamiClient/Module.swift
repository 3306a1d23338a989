// KamiClient
