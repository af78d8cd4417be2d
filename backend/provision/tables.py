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
