"""Training config presets (YAML), shipped inside the package so an installed wheel can train and run the demo."""
