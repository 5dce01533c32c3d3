"""Annotation selection: which sentences people label (strategies, the budgeted pick, the active-learning loop)."""
