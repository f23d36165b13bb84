"""Workloads: tasks as labelled text pieces (gsm8k, retrieval, sharegpt, text), each with its own parameters
and scoring, registered by kind in `registry`."""
