"""Maintenance: the database's periodic duties, as small services (Rescuer, Pruner), each run
by exactly one process of the database per period (taskq.take_turn), whichever processes run
a MaintenanceRunner: every worker, and the operator for every database it holds. Who runs what,
and why a turn rather than a leader: docs/design.md, "Maintenance: one owner per duty"."""
