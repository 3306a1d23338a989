// KamiPool: see module documentation.
