"""Google Sheets: user-defined metrics from a sheet range, imported all-or-nothing like CSV."""
