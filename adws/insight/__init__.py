"""See and foresee: commands that read what adws recorded or will do, without running an agent.

One module per command (`stats`, `replay`, `simulate`, `lint`, `report`), plus `records` (streaming the audit
log) and `predicates` (what a compiled condition admits, for lint). The CLI imports each module only when its
command runs.
"""
