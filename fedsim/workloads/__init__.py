"""Tasks as labelled text pieces: gsm8k (lm-eval exemplars), retrieval (synthetic), sharegpt, text."""

from fedsim.workloads.base import PromptPiece, Task, make_task

__all__ = ["PromptPiece", "Task", "make_task"]
