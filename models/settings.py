"""Settings from the environment (prefix SERPTRAIN_), one class per area."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.errors import UserError

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERPTRAIN_", extra="ignore")

    store: str = Field(
        default="sqlite:///./.serptrain/serptrain.db",
        description="Store URL: sqlite:///PATH or couchbase://HOST / couchbases://HOST.",
    )
    runs_dir: Path = Field(default=Path("./runs"), description="Where model bundles are written.")
    data_dir: Path = Field(default=Path("./.serptrain"), description="Working data: caches, synthetic images.")
    serpapi_url: str = Field(default="https://serpapi.com", description="SerpApi base URL.")
    serpapi_rate_limit: str = Field(
        default="", description="Name of a Prefect global concurrency limit every SerpApi call takes a slot of "
        "(`prefect gcl create serpapi --limit N --slot-decay-per-second R`); empty: no limit.")
    allow_private_hosts: bool = Field(default=False, description="Allow downloads from private addresses.")
    trusted_networks: str = Field(
        default="", description="Private networks downloads may reach anyway (an internal image mirror): "
        "comma-separated addresses or CIDRs, e.g. 10.1.0.0/16.")
    couchbase_user: str = Field(default="", description="Couchbase user name.")
    couchbase_password: SecretStr = Field(default=SecretStr(""), description="Couchbase password.")
    couchbase_bucket: str = Field(default="serptrain", description="Couchbase bucket.")
    couchbase_timeout_s: float = Field(default=10.0, gt=0, description="Couchbase connect timeout.")
    num_workers: int = Field(default=-1, ge=-1, description="DataLoader workers; -1 picks by CPU count.")
    device: str = Field(default="auto", description="Training device: auto, cpu, cuda, cuda:N, mps.")
    cache_mb: int = Field(default=2048, ge=0, description="Decoded-image cache per training run, MB.")
    task_runner: str = Field(
        default="threads", pattern="^(threads|dask)$",
        description="Task runner of the acquisition flow: threads (in-process pool) or dask (an existing cluster).",
    )
    dask_address: str = Field(default="", description="Dask scheduler address (tcp://HOST:8786) for task_runner=dask.")
    nproc_per_node: int = Field(default=1, ge=1, le=64, description="Training processes per machine (DDP).")
    nnodes: int = Field(default=1, ge=1, le=1024, description="Machines taking part in one training run (DDP).")
    rdzv_endpoint: str = Field(default="", description="torchrun rendezvous HOST:PORT when nnodes > 1.")

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        from tasks.netguard import parse_networks

        parse_networks(value)
        return value


def _setting_problem(err: Any, prefix: str) -> str:
    variable = prefix + "_".join(map(str, err["loc"])).upper()
    return f"{variable}: {err['msg'].removeprefix('Value error, ')}; found {err.get('input')!r}"


def load_from_environment(settings_class: type[SettingsT]) -> SettingsT:
    """`settings_class()`, or a UserError naming each environment variable that holds a bad value."""
    try:
        return settings_class()
    except ValidationError as exc:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        lines = [_setting_problem(err, prefix) for err in exc.errors()]
        raise UserError("bad setting(s) in the environment:\n  " + "\n  ".join(lines)) from None


def load_settings() -> Settings:
    return load_from_environment(Settings)
