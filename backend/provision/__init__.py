"""Provisioning: playbooks (playbooks/ at the top of the checkout) run over SSH on GPU hosts.

- playbook.py     the playbook file format, its strict loader, and variable checking
- template.py     `{{ name }}` placeholders: shell-quoted in commands, filters for files
- runner.py       PlaybookRunner: runs a playbook on one host, streams events (events.py)
- ssh.py          the paramiko connection: key-only auth, streamed commands, SFTP
- known_hosts.py  tokenmill's own known_hosts: unknown keys await confirmation, changed keys are refused
- runs.py, tables.py  the record of every run and its steps

Nothing is imported here, so that loading the tables (Alembic, the ledger) does not load paramiko.
"""
