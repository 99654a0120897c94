"""Settings from the environment (or .env), named as README's Configuration table names them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from agent.checkout import DEFAULT_BRANCH_PREFIX
from bots.features import Feature, Risk
from db.secrets import MIN_SECRET_KEY_CHARS
from processors.context import SummaryMode
from relay.features import features_of, risks_of


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///./agent-relay.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    agent_server_url: str = "http://127.0.0.1:3000"
    agent_server_api_key: SecretStr | None = None
    agent_webhook_secret: SecretStr | None = None
    agent_llm_model: str = "anthropic/claude-sonnet-4-5"
    agent_llm_api_key: SecretStr | None = None
    agent_llm_base_url: str | None = None
    agent_llm_extra: dict[str, Any] = Field(default_factory=dict)
    # Where each conversation's own directory is made (agent.workspaces), relative to
    # the agent-server's working directory unless absolute.
    agent_workspace_root: str = "workspace"
    # The name AGENT_WORKSPACE_ROOT had while every conversation shared one directory;
    # still read (as the root) when the new name is not set.
    agent_workspace_dir: str | None = None
    agent_conversation_url: str | None = None
    # Where the agent-server reaches the relay (the credentials each conversation's
    # terminal and git fetch); default PUBLIC_URL.
    agent_relay_url: str | None = None
    # What a conversation's pushed work becomes: a draft pull (merge) request, a ready
    # one, or nothing (a read-only checkout, an answer in text only).
    pull_requests: Literal["draft", "ready", "off"] = "draft"
    # Work branches are named {BRANCH_PREFIX}{issue number or "slack"}-{8 hex}.
    branch_prefix: str = Field(default=DEFAULT_BRANCH_PREFIX, min_length=1)
    summary_mode: SummaryMode = SummaryMode.INSTRUCTION

    slack_signing_secret: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # An app-level token (xapp-..., scope connections:write): Slack's events arrive over
    # Socket Mode (bots/slack/socket_mode.py) instead of at /slack/events.
    slack_app_token: SecretStr | None = None
    # Member ids (comma-separated) who may stop any run and answer any approval in
    # Slack, besides the person who asked.
    slack_approvers: Annotated[list[str], NoDecode] = Field(default_factory=list)

    github_app_id: str | None = None
    github_private_key: SecretStr | None = None
    github_private_key_path: str | None = None
    github_webhook_secret: SecretStr | None = None
    github_api_url: str = "https://api.github.com"
    github_url: str = "https://github.com"
    # Edit the "on it" comment into the answer instead of adding a second comment.
    github_edit_ack_comment: bool = False

    gitlab_url: str = "https://gitlab.com"
    gitlab_token: SecretStr | None = None
    gitlab_webhook_secret: SecretStr | None = None
    # The token the agent pushes with; GITLAB_TOKEN when unset (README: a project
    # access token narrows it to one project).
    gitlab_agent_token: SecretStr | None = None

    bot_mention: str = "@openhands"
    trigger_label: str = "openhands"
    default_repository: str | None = None
    api_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    # Webhook receivers are URLs API users choose: unless this is true, they may not
    # be on loopback, private, link-local (cloud metadata) or other non-public
    # addresses (processors/receiver_guard.py).
    webhook_allow_private_networks: bool = False

    worker_concurrency: int = Field(default=4, ge=1, le=64)
    job_lease_seconds: float = Field(default=60.0, ge=5.0)
    # Done jobs, delivery-ledger rows and closed callbacks' processor settings older
    # than this are pruned (db/retention.py); 0 keeps everything.
    retention_days: float = Field(default=7.0, ge=0.0)
    # How often the pruning job runs (a short interval lets a soak test show it).
    retention_interval_seconds: float = Field(default=3600.0, ge=1.0)
    # Reconciliation (processors/reconcile.py): how often the agent-server is asked
    # about conversations with an ACTIVE callback that have been quiet this long.
    reconcile_interval_seconds: float = Field(default=60.0, ge=1.0)
    reconcile_after_seconds: float = Field(default=300.0, ge=1.0)
    # How often the GitHub App's and GitLab's delivery logs are read for deliveries
    # that failed, which are redelivered (bots/redelivery.py).
    github_redeliver_interval_seconds: float = Field(default=300.0, ge=1.0)
    gitlab_redeliver_interval_seconds: float = Field(default=300.0, ge=1.0)

    @field_validator("slack_approvers", mode="before")
    @classmethod
    def _member_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite://, postgresql:// or postgres://")
        return url

    @field_validator(
        "agent_server_url",
        "public_url",
        "agent_relay_url",
        "agent_llm_base_url",
        "slack_api_url",
        "github_api_url",
        "github_url",
        "gitlab_url",
    )
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("github_private_key_path")
    @classmethod
    def _readable_key_file(cls, path: str | None) -> str | None:
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"no such file: {path}")
        return path

    @field_validator("secret_key")
    @classmethod
    def _long_secret_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_SECRET_KEY_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_CHARS} characters")
        return key

    @field_validator("agent_conversation_url")
    @classmethod
    def _conversation_template(cls, template: str | None) -> str | None:
        if template is None:
            return None
        if "{conversation_id}" not in template:
            raise ValueError("must contain {conversation_id}")
        try:
            template.format(conversation_id="0" * 32)
        except (KeyError, IndexError, ValueError):
            raise ValueError("may contain no {placeholder} but {conversation_id}") from None
        return template

    @property
    def slack_mode(self) -> Literal["oauth", "single"] | None:
        """How Slack runs: many workspaces through OAuth (preferred when its settings
        are complete), one workspace with SLACK_BOT_TOKEN, or not at all."""
        # Socket Mode needs no signing secret: the connection is the app's own.
        if not (self.slack_signing_secret or self.slack_app_token):
            return None
        if self.slack_client_id and self.slack_client_secret and self.secret_key:
            return "oauth"
        if self.slack_bot_token:
            return "single"
        return None

    @property
    def github_mode(self) -> Literal["settings", "setup"] | None:
        """Where the GitHub App's credentials come from: the settings, or the one-click
        setup page (which stores them encrypted, so it needs SECRET_KEY)."""
        if (
            self.github_app_id
            and (self.github_private_key or self.github_private_key_path)
            and self.github_webhook_secret
        ):
            return "settings"
        if self.secret_key:
            return "setup"
        return None

    @property
    def gitlab_enabled(self) -> bool:
        """GitLab runs when both its token and its webhook secret are set."""
        return bool(self.gitlab_token and self.gitlab_webhook_secret)

    @property
    def relay_url_for_agent(self) -> str | None:
        """AGENT_RELAY_URL, else PUBLIC_URL: where the agent-server reaches the relay."""
        return (self.agent_relay_url or self.public_url or "").rstrip("/") or None

    @property
    def workspace_root(self) -> str:
        """AGENT_WORKSPACE_ROOT, or the old AGENT_WORKSPACE_DIR when only that is set."""
        if "agent_workspace_root" not in self.model_fields_set and self.agent_workspace_dir:
            return self.agent_workspace_dir
        return self.agent_workspace_root

    def github_private_key_text(self) -> str | None:
        """The app's PEM key from GITHUB_PRIVATE_KEY (escaped newlines allowed, as .env
        files and CI secrets often hold it) or from the file GITHUB_PRIVATE_KEY_PATH."""
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value().replace("\\n", "\n")
        if self.github_private_key_path:
            with open(self.github_private_key_path, encoding="utf-8") as key_file:
                return key_file.read()
        return None

    def features(self) -> list[Feature]:
        """The optional features, in the order the report lists them: on (and how)
        or off (and what would turn them on)."""
        return features_of(self)

    def risks(self) -> list[Risk]:
        """Combinations of settings that leave something off or look like a mistake."""
        return risks_of(self)

    def feature_report(self) -> list[str]:
        """One line per optional feature: on, or off and what would turn it on."""
        return [feature.line() for feature in self.features()]


@dataclass(frozen=True)
class InvalidSetting:
    variable: str
    reason: str

    def __str__(self) -> str:
        return f"invalid setting {self.variable}: {self.reason}"


class SettingsError(SystemExit):
    """Start-up stops with a message that names each offending variable."""

    def __init__(self, problems: list[InvalidSetting]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


SOCKET_MODE_WITHOUT_OAUTH = (
    "Socket Mode does not serve Slack's OAuth install (/slack/install needs a public URL):"
    " unset SLACK_CLIENT_ID and SLACK_CLIENT_SECRET and set SLACK_BOT_TOKEN, or unset"
    " SLACK_APP_TOKEN"
)


def load_settings() -> Settings:
    settings = _read_settings()
    if settings.slack_app_token and settings.slack_mode == "oauth":
        raise SettingsError([InvalidSetting("SLACK_APP_TOKEN", SOCKET_MODE_WITHOUT_OAUTH)])
    return settings


def _read_settings() -> Settings:
    try:
        return Settings()
    except PydanticSettingsError as exc:
        # Raised before validation, e.g. for a JSON setting that is not JSON; the
        # message names the field.
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "(unknown)"
        raise SettingsError([InvalidSetting(name, "not valid JSON")]) from None
    except ValidationError as exc:
        problems = [
            InvalidSetting(str(error["loc"][0]).upper(), error["msg"]) for error in exc.errors()
        ]
        raise SettingsError(problems) from None
