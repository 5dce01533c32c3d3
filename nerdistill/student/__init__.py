"""The student: pools to batches under a blending schedule (data module, sampler, schedules), the
Lightning module and its backbones, the run plan, noise-aware relabelling, and inference."""
