"""Every playbook run and what each of its steps did, for the operator's history and audits."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

RUN_OUTCOMES = ("running", "succeeded", "failed", "cancelled")
STEP_STATUSES = ("ok", "skipped", "failed")


class ProvisionRun(SQLModel, table=True):
    """One run of a playbook against one machine. `running` until it ends; a run still `running`
    after a restart of the backend was cut short by it."""

    __tablename__ = "provision_run"
    __table_args__ = (
        CheckConstraint("outcome IN ('running', 'succeeded', 'failed', 'cancelled')", name="ck_provision_run_outcome"),
    )

    id: str = Field(sa_column=Column(Text, primary_key=True))
    # The enrolled host this run was for, when there is one (a machine can be bootstrapped before).
    host_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, index=True))
    address: str = Field(sa_column=Column(Text, nullable=False))  # user@host:port
    playbook: str = Field(sa_column=Column(Text, nullable=False))
    # JSON object of the values the run used, secret ones replaced by "***".
    variables: str = Field(sa_column=Column(Text, nullable=False))
    started_us: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    finished_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    outcome: str = Field(sa_column=Column(Text, nullable=False))
    failed_step: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class ProvisionStep(SQLModel, table=True):
    """A step that was reached: done, skipped or failed (the steps after a failure have no row)."""

    __tablename__ = "provision_step"
    __table_args__ = (
        UniqueConstraint("run_id", "position", name="uq_provision_step_position"),
        CheckConstraint("status IN ('ok', 'skipped', 'failed')", name="ck_provision_step_status"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                          primary_key=True, autoincrement=True))
    run_id: str = Field(sa_column=Column(Text, ForeignKey("provision_run.id"), nullable=False, index=True))
    position: int = Field(sa_column=Column(Integer, nullable=False))  # the step's 1-based index
    name: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # why skipped or failed
    exit_status: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    started_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    finished_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    # The end of the step's output (secrets masked), at most runs.OUTPUT_LIMIT_BYTES; the bytes
    # dropped from its beginning are counted in output_dropped_bytes.
    output: str = Field(sa_column=Column(Text, nullable=False, server_default=""))
    output_dropped_bytes: int = Field(sa_column=Column(BigInteger, nullable=False, server_default="0"))


HOST_STATES = ("provisioning", "serving", "failed", "interrupted", "tearing_down", "removed")


class ProvisionedHost(SQLModel, table=True):
    """A host tokenmill set up itself, with what tearing it down needs: where the machine is, and
    which cloud instance (if any) bills for it. Kept across restarts of the backend, so a host
    provisioned last week can still be torn down and its instance destroyed."""

    __tablename__ = "provisioned_host"
    __table_args__ = (
        CheckConstraint("state IN ('provisioning', 'serving', 'failed', 'interrupted', 'tearing_down', 'removed')",
                        name="ck_provisioned_host_state"),
    )

    host_id: str = Field(sa_column=Column(Text, ForeignKey("host.id"), primary_key=True))
    provider: str = Field(sa_column=Column(Text, nullable=False))
    # The instance's unique name at the provider: how an instance whose id we never heard back
    # (the backend stopped during create) is found again.
    instance_name: str = Field(sa_column=Column(Text, nullable=False))
    # The provider's instance id; None for the operator's own machines (provider ssh) and until
    # the provider has answered the create.
    instance_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    ssh_host: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    ssh_port: int = Field(sa_column=Column(Integer, nullable=False, server_default="22"))
    ssh_user: str = Field(sa_column=Column(Text, nullable=False, server_default="root"))
    model: str = Field(sa_column=Column(Text, nullable=False))
    # JSON object: the teardown playbook's variables as bootstrap used them (install_dir...).
    teardown_variables: str = Field(sa_column=Column(Text, nullable=False, server_default="{}"))
    created_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    state: str = Field(sa_column=Column(Text, nullable=False))
