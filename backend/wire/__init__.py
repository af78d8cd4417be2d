"""The wire floor: msgspec shapes of every API (admin, provisioning, the client request fields the
router reads) and the error envelope. Services build them, controllers return them, the console
and the CLI decode them. Imports nothing of backend/ above the foundations."""
