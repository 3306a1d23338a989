// KamiEngine: see module documentation.
