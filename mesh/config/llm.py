"""The ``llm:`` section of a declarative LLM agent in mesh.yaml: provider, server, model, key, limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_URLS = {"ollama": "http://127.0.0.1:11434", "openai": "http://127.0.0.1:8000/v1"}


class LLMConfig(BaseModel):
    """Which model answers: ``provider: openai`` (any OpenAI-compatible server) or ``provider: ollama``."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["openai", "ollama"]
    model: str = Field(min_length=1)
    base_url: str | None = Field(None, description="the server (openai: .../v1); default per provider")
    host: str | None = Field(None, description="Ollama's spelling of base_url")
    api_key: str | None = Field(None, description="${VAR}: the key comes from the environment")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="longest one model round trip may take")
    retries: int = Field(2, ge=0, le=10, description="retries of a 429 or 5xx answer")
    max_retry_wait: float = Field(10.0, ge=0, le=600, description="longest Retry-After this agent waits")
    temperature: float | None = Field(None, ge=0, le=2)
    price_in: float | None = Field(None, ge=0, description="cost per million prompt tokens, when the server reports none")
    price_out: float | None = Field(None, ge=0, description="cost per million completion tokens")

    @model_validator(mode="after")
    def _one_url(self) -> LLMConfig:
        if self.base_url and self.host:
            raise ValueError("give base_url or host, not both")
        url = self.base_url or self.host or DEFAULT_URLS[self.provider]
        if not url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        self.base_url, self.host = url.rstrip("/"), None
        self.api_key = self.api_key or None  # ${KEY:-} with KEY unset: no key
        return self
