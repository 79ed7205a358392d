"""Training datasets: the one way recorded data reaches model training.

A training client asks for a snapshot for a declared purpose; the portal builds it from the
vault under the rules of consent, objections, deletions, retention and sensitivity, logs the
read in each person's access log, and keeps the lineage from each person's records to the
models trained on them (see docs/training.md).
"""
