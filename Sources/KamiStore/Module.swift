// KamiStore: see module documentation.
