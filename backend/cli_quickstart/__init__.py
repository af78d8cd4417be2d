"""`tokenmill quickstart`: the first-time operator's wizard.

It asks what a new business must decide, each question with a default (Enter takes it): the models
to sell, where the GPUs come from (GPU clouds with their API keys, or a machine of one's own over
SSH), the starting fleet, the price policy, the autoscaler's budget and the daily profit target.
Then it simulates that plan for a few days (backend/simulate, the production services on a virtual
clock), shows the expected daily profit, writes the config file (secrets inside, so 0600, and never
over an existing file without asking) and, if the operator says so, provisions the first host
through the running backend: the wizard hands `tokenmill provision ...` to the command line (`run`,
given by backend/cli.py, the floor that sees both), the same command it prints when no backend
answers.

Settings have no field for the models, the fleet or the SSH machine (the backend serves every
enabled catalogue model and hosts come from provisioning), so the config file records those
answers as comments, beside the settings the answers do set.

Parts: answers.py (what each answer may be, and the defaults earlier answers give), questions.py
(the terminal), estimate.py (the simulation and its screen), config_file.py (TOML, 0600),
command.py (the command's flow and the first host).
"""

from backend.cli_quickstart.command import add_command, quickstart

__all__ = ["add_command", "quickstart"]
