"""Command-line layer: one module per ``mtmnv3`` subcommand."""
