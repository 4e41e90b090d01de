"""Robot-intent classification on an encoder base: all-MiniLM-L6-v2 with a 2-layer shadow."""
