"""CSV uploads: user-defined metrics from a CSV file, imported all-or-nothing."""
