"""Robot-intent demo: Home Assistant commands -> actions with a SmolLM2 shadow."""
