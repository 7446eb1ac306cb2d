"""Intake: the rehearsal request and the contract a run uses, read once (the dump itself: core/dumps/)."""
