"""The trainer: plain PyTorch, independent of Prefect, so any launcher can call it."""
