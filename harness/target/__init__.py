"""Target mode: race someone else's payment service, in any language, without touching its code.

- file.py: the target file (TOML): the service, its database, its requests, its invariants,
  its variants (builds) and what each must show;
- service.py: the service's process and database;
- session.py: what a target's runs share (racebench's connection, the barrier, the clients);
- barrier.py: the table-lock barrier and the row holder, and who they hold;
- writes.py: which tables a request writes, in which transaction, after a read or not (the
  lock probe);
- race.py: one run of a scenario's target script, proved forced or said not to be;
- matrix.py: scenarios x variants, with what each cell expects;
- check.py: `racebench target check`;
- load.py: the benchmark's payments and requests, for Locust.

Nothing here imports the reference service: a target is anything described by a file.
"""
