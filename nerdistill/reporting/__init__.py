"""Reports of finished runs: loading and grouping sweeps, tables (mean ± std over seeds), plots, and
annotate sweeps side by side."""
