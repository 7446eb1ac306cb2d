"""The clone stage: restore, and verified clone templates kept on the rehearsal server (templates.py)."""
