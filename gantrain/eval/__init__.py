"""Scoring: the evaluator (what a run's samples score, next to the real data's floor), the metrics, the
domain classifier they read, and the translation scores. May import nets, data and the leaves; never
train, api or the commands."""
