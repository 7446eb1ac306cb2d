"""The run: the stages in order over one run record, how a stage runs and stops, interruptions, automation."""
