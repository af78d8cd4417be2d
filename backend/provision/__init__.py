"""Provisioning: playbooks (playbooks/ at the top of the checkout) run over SSH on GPU hosts.

- playbook.py     the playbook file format, its strict loader, and variable checking
- template.py     `{{ name }}` placeholders: shell-quoted in commands, filters for files
- runner.py       PlaybookRunner: runs a playbook on one host, streams events (events.py)
- ssh.py          the paramiko connection: key-only auth, streamed commands, SFTP
- known_hosts.py  tokenmill's own known_hosts: unknown keys await confirmation, changed keys are refused
- runs.py, tables.py  the record of every run and its steps

Jobs the operator starts (admin API /admin/provision, /admin/hosts/{id}/teardown; the CLI):

- service.py      Provisioner: checks requests, starts and cancels jobs, host-key confirmation, offers
- provision_job.py  a machine becomes a serving host; a failure destroys what it rented
- teardown_job.py   a host drains, its agent is removed, its instance destroyed, the host removed
- jobs.py         a job's state and bounded events, as the API shows them
- reach.py        waiting for a machine's SSH port and for its host key to be trusted
- offers.py       offers of every cloud with an API key that fit a model, with expected profit
- variables.py    the playbook variables of one host
- wheel.py        the tokenmill wheel hosts install (built from the checkout, or settings.host_wheel)
- hosts.py        provisioned_host: where each provisioned host's machine is, for its teardown

Nothing is imported here, so that loading the tables (Alembic, the ledger) does not load paramiko.
"""
