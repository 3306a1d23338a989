// KamiCSV: see module documentation.
