"""HTTP fetch MCP server: GET a URL on a host allowed in mesh.yaml, with address checks, size and time limits.

Each hop of a request (the URL, then every redirect) is checked before any
connection is made: the scheme must be http or https, the host (and port)
must match ``allowed_hosts``, and every address the host resolves to must be
public; private, loopback, link-local, multicast and reserved addresses are
refused unless they lie in ``allowed_networks``. The connection then goes to
the address that was checked (not to a second DNS answer), with the original
name in the Host header and TLS SNI, so DNS rebinding cannot swap it.
Proxies from the environment are ignored for the same reason. Bodies are
read up to ``max_bytes`` (then cut, and the result says so) and the whole
fetch, redirects included, must finish within ``timeout_s``.
"""

import asyncio
import ipaddress
import re
from typing import Annotated

import httpx
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ByteSize, Field, IPvAnyNetwork, field_validator

from mcp_tools._common import ToolSettings, add_tool
from mesh.client.addresses import AddressRefused, address_allowed, resolve_allowed

DEFAULT_PORTS = {"http": 80, "https": 443}
HOST_PATTERN = re.compile(r"^(?P<host>\[[0-9a-f:.]+\]|(?:\*\.)?[a-z0-9_.-]+)(?::(?P<port>\d{1,5}))?$")
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml", "application/javascript",
              "application/ld+json", "application/rss", "application/atom")


class Settings(ToolSettings):
    allowed_hosts: list[str] = Field(default_factory=list, description=(
        "hosts that may be fetched: 'example.com', '*.example.com' (its subdomains), 'localhost:8080'; "
        "without a port only 80/443"))
    allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list, description=(
        "private, loopback or link-local networks that may be reached anyway, e.g. 127.0.0.0/8"))
    max_bytes: ByteSize = Field(ByteSize(1024 * 1024), ge=1, description="bodies are cut after this many bytes")
    timeout_s: float = Field(10.0, gt=0, le=300, description="the whole fetch, redirects included")
    max_redirects: int = Field(5, ge=0, le=20)
    user_agent: str = "a2a-mcp-mesh-fetch/1.0"

    @field_validator("allowed_hosts")
    @classmethod
    def _lower_case(cls, hosts: list[str]) -> list[str]:
        cleaned = []
        for host in hosts:
            host = host.strip().lower()
            if not HOST_PATTERN.match(host):
                raise ValueError(f"{host!r} is not a host name (write 'example.com' or 'example.com:8080', no scheme or path)")
            cleaned.append(host)
        return cleaned


class FetchResult(BaseModel):
    url: str = Field(description="the URL finally fetched, after redirects")
    status: int
    content_type: str | None
    text: str | None = Field(description="the body as text (null for binary content)")
    bytes_read: int
    truncated: bool = Field(description="true when the body was longer than the limit and was cut")
    redirects: list[str] = Field(description="the URLs redirected through, in order")


class FetchRefused(ToolError):
    """The URL, a redirect or an address is not allowed, or a limit was hit; the message says which."""


class Fetcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def host_allowed(self, host: str, port: int, scheme: str) -> bool:
        for pattern in self.settings.allowed_hosts:
            match = HOST_PATTERN.match(pattern)
            name = match["host"].strip("[]")
            wanted_port = int(match["port"]) if match["port"] else DEFAULT_PORTS[scheme]
            if port == wanted_port and (host == name or (name.startswith("*.") and host.endswith(name[1:]))):
                return True
        return False

    def check_url(self, url: httpx.URL) -> tuple[str, int]:
        if url.scheme not in DEFAULT_PORTS:
            raise FetchRefused(f"only http:// and https:// URLs can be fetched, not {url.scheme or 'a relative URL'}")
        if url.userinfo:
            raise FetchRefused("URLs with a user name or password are refused")
        host = url.host.lower()
        if not host:
            raise FetchRefused("the URL has no host")
        port = url.port or DEFAULT_PORTS[url.scheme]
        if not self.host_allowed(host, port, url.scheme):
            shown = host if port == DEFAULT_PORTS[url.scheme] else f"{host}:{port}"
            allowed = ", ".join(self.settings.allowed_hosts) or "none: add allowed_hosts to this tool's settings in mesh.yaml"
            raise FetchRefused(f"the host {shown} is not allowed (allowed hosts: {allowed})")
        return host, port

    def address_allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return address_allowed(address, self.settings.allowed_networks)

    async def resolve(self, host: str, port: int) -> str:
        """The address to connect to: every address of ``host`` must be allowed, and the first is used."""
        try:
            return await resolve_allowed(host, port, self.settings.allowed_networks)
        except AddressRefused as exc:
            raise FetchRefused(str(exc)) from None

    async def fetch(self, url_text: str, max_bytes: int | None) -> FetchResult:
        limit = min(max_bytes or int(self.settings.max_bytes), int(self.settings.max_bytes))
        try:
            url = httpx.URL(url_text)
        except httpx.InvalidURL as exc:
            raise FetchRefused(f"not a valid URL: {exc}") from None
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                return await self._fetch(url, limit)
        except TimeoutError:
            raise FetchRefused(f"the fetch did not finish within the time limit of {self.settings.timeout_s:g}s") from None

    async def _fetch(self, url: httpx.URL, limit: int) -> FetchResult:
        redirects: list[str] = []
        # trust_env=False: a proxy from the environment would connect to addresses this tool never checked.
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=self.settings.timeout_s) as client:
            while True:
                host, port = self.check_url(url)
                address = await self.resolve(host, port)
                target = url.copy_with(host=address)
                host_header = url.netloc.decode("ascii")
                request = client.build_request(
                    "GET", target, headers={"Host": host_header, "User-Agent": self.settings.user_agent,
                                            "Accept": "text/*, application/json;q=0.9, */*;q=0.5"},
                    extensions={"sni_hostname": host} if url.scheme == "https" else {},
                )
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise FetchRefused(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
                async with _closing(response):
                    location = response.headers.get("location")
                    if response.is_redirect and location:
                        if len(redirects) >= self.settings.max_redirects:
                            raise FetchRefused(f"more than {self.settings.max_redirects} redirects")
                        redirects.append(str(url))
                        url = url.join(location)
                        continue
                    return await self._result(url, response, limit, redirects)

    async def _result(self, url: httpx.URL, response: httpx.Response, limit: int, redirects: list[str]) -> FetchResult:
        chunks: list[bytes] = []
        size = 0
        truncated = False
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                truncated = True
                break
        body = b"".join(chunks)[:limit]
        content_type = response.headers.get("content-type")
        text = None
        if content_type is None or content_type.lower().startswith(TEXT_TYPES) or "+json" in content_type or "+xml" in content_type:
            text = body.decode(response.charset_encoding or "utf-8", errors="replace")
        return FetchResult(url=str(url), status=response.status_code, content_type=content_type, text=text,
                           bytes_read=len(body), truncated=truncated, redirects=redirects)


class _closing:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    async def __aenter__(self) -> httpx.Response:
        return self.response

    async def __aexit__(self, *exc) -> None:
        await self.response.aclose()


def create_server(settings: Settings) -> MCPServer:
    fetcher = Fetcher(settings)
    hosts_text = ", ".join(settings.allowed_hosts) or "none configured"
    server = MCPServer(
        "http_fetch",
        title="HTTP fetch",
        instructions=f"Fetch web pages and APIs with GET, only from these hosts: {hosts_text}.",
        version="1.0.0",
    )

    async def fetch(
        url: Annotated[str, Field(min_length=1, max_length=8192, description=f"An http:// or https:// URL on an allowed host ({hosts_text}).")],
        max_bytes: Annotated[int | None, Field(ge=1, description=f"Read at most this many bytes of the body (at most {int(settings.max_bytes):,}).")] = None,
    ) -> FetchResult:
        """Fetch a URL with HTTP GET and return its status, content type and text (bodies are cut at the size limit).

        Redirects are followed only to allowed hosts; private and loopback addresses are refused.
        """
        return await fetcher.fetch(url, max_bytes)

    add_tool(server, fetch, annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True))
    return server


if __name__ == "__main__":
    from mesh.tools.runner import run_module

    run_module(__spec__.name)
